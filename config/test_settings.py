"""Settings for the test suite: the real settings plus what makes test databases quick to build.

dj-stripe's ~100 migrations take about a minute per database, so tests build its tables from one
squashed migration in `tests/djstripe_migrations` (regenerate it when dj-stripe is upgraded:
`DJANGO_SETTINGS_MODULE=config.test_settings uv run manage.py makemigrations djstripe`). Our own
apps still run their real migrations, so the constraints and triggers they add are tested.
"""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from config.settings import *  # noqa: F403
from config.settings import CACHES, DATABASES, Q_CLUSTER

MIGRATION_MODULES = {"djstripe": "tests.djstripe_migrations"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
ACCOUNT_EMAIL_VERIFICATION = "optional"

# Each test database gets its own cache table or Redis key prefix so parallel runs don't mix.
if "redis" in CACHES["default"]["BACKEND"]:
    CACHES["default"]["KEY_PREFIX"] = f"test-{os.getpid()}"

# One test database per test run, so that several runs on one machine never share one.
_run = os.environ.setdefault("METERLINE_TEST_RUN", str(os.getpid()))
if "sqlite" in DATABASES["default"]["ENGINE"]:
    # A file, not memory: concurrency tests open the database from several processes.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test-{_run}"}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_run}"}
# Each test run and xdist worker gets its own django-q2 cluster name: the task queue and the
# clusters' heartbeats in Redis are named after it, so a test that starts a worker
# (tests/operations) never sees another run's or takes its tasks. A worker the test starts
# inherits PYTEST_XDIST_WORKER and so the same name.
Q_CLUSTER = {
    **Q_CLUSTER,
    "name": f"meterline-{_run}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}",
}
NOTIFICATIONS_SYNC = True  # tests send notifications inline, not through the worker
PAYMENTS_SYNC = True  # auto-top-up charges and card follow-ups run inline, after commit
WEBHOOKS_SYNC = True  # deliveries run inline, after commit
WEBHOOKS_ALLOW_PRIVATE = True  # receivers of the tests listen on 127.0.0.1; guard tests turn it off
