"""Settings read from the environment (SPEC O1, O2), loaded afresh as a host would load them.

Background worker limits refuse a retry shorter than the timeout (django-q2 would deliver a task
still running to a second worker), and simulated payments never switch on silently in production.
"""

import pytest

from tests.settings_probe import run_settings_probe

_PROBE = """
import django
django.setup()
from django.conf import settings
print(settings.Q_CLUSTER["timeout"], settings.Q_CLUSTER["retry"])
"""


def load_settings(**environment):
    return run_settings_probe(_PROBE, **environment)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({}, "600 900"), ({"Q_TIMEOUT": "1800"}, "1800 2100"), ({"Q_RETRY": "1200"}, "600 1200")],
)
def test_task_timeout_and_retry_come_from_the_environment(environment, expected):
    result = load_settings(**environment)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == expected


def test_a_retry_not_longer_than_the_timeout_is_refused_with_a_clear_message():
    result = load_settings(Q_TIMEOUT="1800", Q_RETRY="900")

    assert result.returncode != 0
    assert "Q_RETRY (900 s) must be longer than Q_TIMEOUT (1800 s)" in result.stderr


# Simulated payments (P6) ----------------------------------------------------------------------

_PAYMENTS_PROBE = """
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
print(settings.PAYMENTS_TEST_MODE, settings.PAYMENT_GATEWAY.rsplit(".", 1)[-1])
call_command("check", deploy=True, fail_level="WARNING")
"""
PRODUCTION = {"DEBUG": "false", "SECRET_KEY": "settings-probe-" + "x" * 50, "ALLOWED_HOSTS": "a.b"}


def test_production_without_stripe_keys_refuses_to_start_rather_than_give_credit_away():
    result = run_settings_probe(_PAYMENTS_PROBE, **PRODUCTION)

    assert result.returncode != 0
    assert "STRIPE_SECRET_KEY is not set and DEBUG is off" in result.stderr
    assert "PAYMENTS_TEST_MODE=true" in result.stderr


def test_simulated_payments_in_production_must_be_asked_for_and_check_deploy_warns():
    result = run_settings_probe(_PAYMENTS_PROBE, PAYMENTS_TEST_MODE="true", **PRODUCTION)

    assert result.stdout.splitlines()[0] == "True TestModeGateway"
    assert result.returncode != 0  # the deploy check's warning fails at level WARNING
    assert "billing.W001" in result.stderr
    assert "customers can add credit without paying" in result.stderr


def test_production_with_stripe_keys_uses_stripe_and_passes_the_deploy_check():
    result = run_settings_probe(
        _PAYMENTS_PROBE, STRIPE_SECRET_KEY="sk_test_settings_probe", **PRODUCTION
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "False StripeGateway"


def test_the_embedded_default_simulates_payments_without_asking():
    result = run_settings_probe(_PAYMENTS_PROBE)

    assert result.stdout.splitlines()[0] == "True TestModeGateway"


# Email (issue 14, item 19) --------------------------------------------------------------------

_MAIL_PROBE = """
import django
django.setup()
from django.conf import settings
from django.core.mail import mail_admins
print(settings.ADMINS)
mail_admins("Ledger drift", "Account 7 drifts.")
"""


def test_the_file_backend_writes_to_email_file_path_and_admins_get_mail_admins(tmp_path):
    result = run_settings_probe(
        _MAIL_PROBE,
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(tmp_path),
        ADMINS="Ops Team <ops@example.test>,finance@example.test",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "[('Ops Team', 'ops@example.test'), ('', 'finance@example.test')]"
    )
    [written] = list(tmp_path.iterdir())
    message = written.read_text()
    assert "To: ops@example.test, finance@example.test" in message
    assert "Ledger drift" in message


def test_an_admins_entry_that_is_not_an_address_is_refused_at_start():
    result = run_settings_probe(_MAIL_PROBE, ADMINS="ops team")

    assert result.returncode != 0
    assert "ADMINS has an entry that is not an email address" in result.stderr
