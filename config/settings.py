"""Meterline settings, read from the environment (SPEC O1, O2).

With no environment at all Meterline runs the embedded default: a SQLite file in `var/`,
django-q2's ORM broker, the database cache, email to the console and the test-mode payment
page instead of Stripe. Production sets DATABASE_URL, REDIS_URL, SMTP and Stripe keys.
"""

from email.utils import parseaddr
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# The embedded default (no DATABASE_URL: SQLite on this machine) is a development setup and runs
# with DEBUG on; a production setup names its database and gets DEBUG off unless it asks.
DEBUG = env.bool("DEBUG", default=not env("DATABASE_URL", default=""))
# A secret is required in production; the embedded default (DEBUG on) may use a fixed one.
SECRET_KEY = env("SECRET_KEY", default="") or (
    "insecure-meterline-development-key-do-not-use-in-production" if DEBUG else ""
)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "django_htmx",
    "django_q",
    "djstripe",
    "accounts",
    "billing",
    "usage",
    "operations",
    "webhooks",
]

# Sessions, logins, messages and htmx are Django's and django-htmx's middleware, kept off the
# JSON API (/api/), which authenticates by API key and never uses them (config/middleware.py).
MIDDLEWARE = [
    # First: the request id, log context and request metrics cover every answer below it.
    "operations.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.middleware.BrowserAuthenticationMiddleware",
    "config.middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "config.middleware.BrowserHtmxMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.web.shell.sidebar",
                "accounts.web.shell.entrance_invitation",
            ],
        },
    },
]

# Databases ---------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'meterline.sqlite3'}"),
}
_db = DATABASES["default"]
if "sqlite" in _db["ENGINE"]:
    # var/ is git-ignored, so a fresh checkout has none, and SQLite does not create folders.
    if Path(_db["NAME"]).parent == VAR_DIR:
        VAR_DIR.mkdir(exist_ok=True)
    # WAL and a busy timeout let the web server and the task worker share the file; "immediate"
    # transactions take the write lock up front, which is SQLite's stand-in for row locks.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The API's key query is a prepared statement on PostgreSQL (usage/key_lookup.py). Turn it off
# behind a transaction-mode pooler, which does not keep SQL-level prepared statements.
KEY_QUERY_PREPARED = env.bool("KEY_QUERY_PREPARED", default=True)

# Cache, rate limits and the task broker ----------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # Falls back to process memory while Redis is down (docs/operations.md, "Redis").
            "BACKEND": "config.redis_cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            # Fail fast rather than hang a request on a Redis host that does not answer.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    # A database cache, unlike the local-memory one, is shared by every process of the site,
    # so rate limits hold across gunicorn workers even in the embedded default.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "meterline_cache",
        }
    }

# A task running longer than Q_TIMEOUT seconds is stopped; one not acknowledged within Q_RETRY is
# delivered again, so Q_RETRY must be longer, or a slow task would run twice at once.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=600)
Q_RETRY = env.int("Q_RETRY", default=Q_TIMEOUT + 300)
if not 0 < Q_TIMEOUT < Q_RETRY:
    raise ImproperlyConfigured(
        f"Q_RETRY ({Q_RETRY} s) must be longer than Q_TIMEOUT ({Q_TIMEOUT} s), and both positive."
    )
Q_CLUSTER = {
    "name": "meterline",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    "max_attempts": 5,
    "catch_up": False,
    "ack_failures": True,
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Authentication ----------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard:home"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
# Adds the plan a new customer chooses, among those staff made selectable at sign-up.
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.web.forms.SignupPlanForm"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
# allauth throttles login failures per address and per IP; admin login is routed through it.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "5/5m/ip,5/5m/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",  # a rate, not a password  # nosec B105
}
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Email -------------------------------------------------------------------------------------
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if env("EMAIL_HOST", default="")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Meterline <billing@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
STAFF_ALERT_EMAILS = env.list("STAFF_ALERT_EMAILS", default=[])
# Django's file backend writes each email to a file in this directory; without it every send
# fails. Relative paths are taken from the project directory.
EMAIL_FILE_PATH = str(BASE_DIR / env("EMAIL_FILE_PATH", default="var/mail"))
# Who gets mail_admins(): server errors (500) and, when STAFF_ALERT_EMAILS is empty, the daily
# ledger check's drift report. Comma-separated "Name <address>" or bare addresses.
ADMINS = [parseaddr(entry) for entry in env.list("ADMINS", default=[])]
if any("@" not in address for _, address in ADMINS):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"ADMINS has an entry that is not an email address: {ADMINS}")

# The operator's brand and legal identity (README, Configuration) ---------------------------
# What customers see on every page, email and document. The defaults are Meterline's own, which
# the demo keeps. BRAND_LOGO is a path under static/ or an absolute https URL.
BRAND_NAME = env("BRAND_NAME", default="Meterline")
BRAND_LOGO = env("BRAND_LOGO", default="")
BRAND_PRIMARY_COLOR = env("BRAND_PRIMARY_COLOR", default="#4353d8")
SUPPORT_EMAIL = env("SUPPORT_EMAIL", default="support@localhost")
SUPPORT_URL = env("SUPPORT_URL", default="")
EMAIL_SENDER_NAME = env("EMAIL_SENDER_NAME", default="")  # empty: BRAND_NAME
# The seller on invoices and receipts; SELLER_ADDRESS takes "\n" between lines.
SELLER_LEGAL_NAME = env("SELLER_LEGAL_NAME", default="")  # empty: BRAND_NAME
SELLER_ADDRESS = env.str("SELLER_ADDRESS", default="", multiline=True)
SELLER_TAX_ID = env("SELLER_TAX_ID", default="")

# Stripe (optional: without keys the test-mode payment page stands in, SPEC P6) ---------------
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_LIVE_MODE = STRIPE_SECRET_KEY.startswith("sk_live_")
STRIPE_TEST_SECRET_KEY = STRIPE_SECRET_KEY if not STRIPE_LIVE_MODE else ""
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""
STRIPE_API_VERSION = "2024-12-18.acacia"
# dj-stripe points the Stripe SDK at STRIPE_API_HOST whenever the setting exists, even empty (which
# breaks every Stripe call), and warns about it when DEBUG is off: define it only when asked for.
if env("STRIPE_API_HOST", default=""):
    STRIPE_API_HOST = env("STRIPE_API_HOST")
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
DJSTRIPE_SUBSCRIBER_MODEL = "accounts.Account"
# Without Stripe keys, simulated payments stand in for Stripe (P6). That is the embedded default;
# with DEBUG off they must be asked for by name, or a production host that merely lacks its
# Stripe keys would let every customer add credit without paying.
PAYMENTS_TEST_MODE = not STRIPE_SECRET_KEY
if PAYMENTS_TEST_MODE and not DEBUG and not env.bool("PAYMENTS_TEST_MODE", default=False):
    raise ImproperlyConfigured(
        "STRIPE_SECRET_KEY is not set and DEBUG is off. Set the Stripe keys to take real payments, "
        "or PAYMENTS_TEST_MODE=true to run with simulated payments (no real money: customers can "
        "add credit without paying)."
    )
# The one place that chooses the payment gateway (billing.payments.gateway.get_gateway): Stripe
# with keys, else the test-mode gateway, allowed just above. Code asks the gateway whether
# payments are simulated, never PAYMENTS_TEST_MODE.
PAYMENT_GATEWAY = (
    "billing.payments.gateway.test_mode.TestModeGateway"
    if PAYMENTS_TEST_MODE
    else "billing.payments.gateway.stripe.StripeGateway"
)
# Charge auto-top-ups and react to card changes inline instead of in the task worker (tests).
PAYMENTS_SYNC = env.bool("PAYMENTS_SYNC", default=False)

# Outbound webhooks (docs/webhooks.md) -------------------------------------------------------
# Let endpoints on loopback, private and link-local addresses receive webhooks: only for the
# demo and tests, whose receivers listen on 127.0.0.1 (the guard stops SSRF in production).
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False)
# Deliver inline after commit instead of in the task worker (tests, the demo without a worker).
WEBHOOKS_SYNC = env.bool("WEBHOOKS_SYNC", default=False)

# Static files ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Security ----------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Meterline ---------------------------------------------------------------------------------
# Rate-limit tiers (requests per minute per key, SPEC G2); a plan may override them.
RATE_LIMIT_TIERS = {"free": 10, "elevated": 60, "paid": 100}
# The plan of the account a new user gets at sign-up (its signup credit is granted at once).
SIGNUP_PLAN_CODE = env("SIGNUP_PLAN_CODE", default="llm-api")

# Operations (docs/operations.md) ---------------------------------------------------------
# /metrics answers only a scraper presenting this as a bearer token; unset, it is a 404.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# /readyz wants a task worker seen within this many seconds (django-q2's cluster heartbeat).
WORKER_HEARTBEAT_SECONDS = env.int("WORKER_HEARTBEAT_SECONDS", default=60)
# How often one web process looks for late scheduled jobs when probed or scraped.
JOB_LIVENESS_CHECK_SECONDS = env.int("JOB_LIVENESS_CHECK_SECONDS", default=60)

# Logs: plain text by default; LOG_FORMAT=json writes one JSON object per line, each with the
# request id and, where known, the account's public id and the API key's prefix.
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "operations.logs.RequestContextFilter"}},
    "formatters": {
        "text": {"format": "%(levelname)s %(name)s %(message)s"},
        "json": {"()": "operations.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_context"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # One line per request (method, path, status, operation, duration); REQUEST_LOG_LEVEL=WARNING
    # keeps them out.
    "loggers": {
        "meterline.requests": {"level": env("REQUEST_LOG_LEVEL", default="INFO")},
    },
}

# Error reporting: optional Sentry (the `sentry` extra), personal data scrubbed
# (operations/sentry.py). Off without SENTRY_DSN.
SENTRY_DSN = env("SENTRY_DSN", default="")
if SENTRY_DSN:
    from operations.sentry import init_sentry

    init_sentry(
        dsn=SENTRY_DSN,
        environment=env("SENTRY_ENVIRONMENT", default=""),
        release=env("SENTRY_RELEASE", default=""),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )
