"""Low-balance, zero-balance and allowance alerts (SPEC N1, N2; seeds 000 and 003)."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.alerts import allowance as allowance_alerts
from billing.alerts import balance as alerts
from billing.invoicing.period_close import close_periods
from billing.ledger.locks import lock_account
from billing.models import AlertSettings, NotificationStatus, Plan, Subscription
from tests.billing import money_and_notices as alerting
from tests.billing.money_and_notices import (
    USD,
    notices,
    report_minutes,
    report_output_tokens,
    spend,
    top_up,
)
from tests.conftest import NOW
from usage.charging.lock import lock_for_charge

committed = alerting.committed  # fixtures
no_ledger_drift = alerting.no_ledger_drift


@pytest.fixture
def voice(make_account):
    """A voice-prepaid account with 50 USD; the plan's threshold is 20 USD (seed 000)."""
    return make_account("voice-prepaid", credit_micros=50 * USD, name="Acme Voice & Co")


# Low balance (N1) -------------------------------------------------------------------------------


def test_voice_prepaid_emails_when_a_deduction_leaves_less_than_20_usd(
    voice, committed, mailoutbox
):
    committed(spend, voice, "30.00")  # 20.00 left: not below the threshold
    assert mailoutbox == []

    committed(spend, voice, "0.01")  # 19.99

    [message] = mailoutbox
    assert message.to == [voice.email]
    assert "$19.99" in message.subject
    assert "Acme Voice & Co" in message.body  # the text part is not HTML-escaped
    assert "$20.00" in message.body
    assert f"/app/a/{voice.public_id}/billing/" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert "Acme Voice &amp; Co" in html and "$19.99" in html
    [notice] = notices(voice, "low_balance")
    assert notice.key == f"low_balance:{voice.public_id}:1"
    assert notice.status == NotificationStatus.SENT
    assert notice.sent_at is not None


def test_llm_api_emails_below_5_usd_and_again_at_zero_after_its_10_usd_signup_credit(
    make_account, committed, mailoutbox
):
    account = make_account("llm-api")
    assert account.balance_micros == 10 * USD

    committed(report_output_tokens, account, 500_000)  # 5.00 USD: 5.00 left, not below
    assert mailoutbox == []
    committed(report_output_tokens, account, 100_000)  # 1.00 USD: 4.00 left
    committed(report_output_tokens, account, 400_000)  # 4.00 USD: nothing left

    assert [m.subject for m in mailoutbox] == [
        f"Low balance: $4.00 left on {account.name}",
        f"{account.name} is out of credit",
    ]
    assert "$5.00" in mailoutbox[0].body
    assert len(notices(account, "low_balance")) == len(notices(account, "zero_balance")) == 1


def test_a_balance_hovering_under_the_threshold_sends_one_email_per_crossing(
    voice, committed, mailoutbox
):
    committed(spend, voice, "31.00")  # 19.00: first crossing
    committed(top_up, voice, "0.50")  # 19.50: up a little, still under
    committed(spend, voice, "1.50")  # 18.00: down again, same crossing
    committed(top_up, voice, "0.99")  # 18.99
    committed(spend, voice, "0.99")  # 18.00
    assert len(mailoutbox) == 1

    committed(top_up, voice, "7.00")  # 25.00: back above, re-armed
    committed(spend, voice, "4.00")  # 21.00: above, nothing
    assert len(mailoutbox) == 1
    committed(spend, voice, "6.00")  # 15.00: second crossing

    assert len(mailoutbox) == 2
    assert [n.key for n in notices(voice, "low_balance")] == [
        f"low_balance:{voice.public_id}:1",
        f"low_balance:{voice.public_id}:2",
    ]


def test_rising_exactly_to_the_threshold_re_arms_the_alert(voice, committed, mailoutbox):
    committed(spend, voice, "30.01")  # 19.99
    committed(top_up, voice, "0.01")  # 20.00: at the threshold counts as back
    committed(spend, voice, "0.01")  # 19.99 again

    assert len(mailoutbox) == 2


def test_the_customers_own_threshold_replaces_the_plan_default(voice, committed, mailoutbox):
    alerts.update_alert_settings(account=voice, low_balance_threshold_micros=45 * USD, now=NOW)

    committed(spend, voice, "4.00")  # 46.00
    assert mailoutbox == []
    committed(spend, voice, "2.00")  # 44.00

    [message] = mailoutbox
    assert "$45.00" in message.body
    assert alerts.low_balance_threshold_micros(account=voice) == 45 * USD


def test_going_back_to_the_plan_threshold(voice):
    alerts.update_alert_settings(account=voice, low_balance_threshold_micros=45 * USD, now=NOW)
    alerts.update_alert_settings(account=voice, use_plan_threshold=True, now=NOW)

    assert alerts.low_balance_threshold_micros(account=voice) == 20 * USD


def test_a_threshold_raised_above_the_balance_alerts_on_the_next_deduction(
    voice, committed, mailoutbox
):
    alerts.update_alert_settings(account=voice, low_balance_threshold_micros=100 * USD, now=NOW)

    committed(spend, voice, "0.10")

    assert len(mailoutbox) == 1
    assert "$100.00" in mailoutbox[0].body


def test_an_account_that_never_had_its_threshold_is_not_told_it_crossed_it(
    make_account, committed, mailoutbox
):
    account = make_account("voice-prepaid", credit_micros=10 * USD)  # below 20 from the start

    committed(spend, account, "1.00")

    assert notices(account, "low_balance") == []
    committed(spend, account, "9.00")  # but reaching zero is always told
    assert [n.kind for n in notices(account, "zero_balance")] == ["zero_balance"]


def test_dropping_from_above_the_threshold_to_zero_sends_only_the_out_of_credit_email(
    voice, committed, mailoutbox
):
    committed(spend, voice, "50.00")

    assert [m.subject for m in mailoutbox] == [f"{voice.name} is out of credit"]
    state = AlertSettings.objects.get(account=voice)
    assert not state.low_balance_armed and not state.zero_balance_armed


def test_with_the_zero_email_turned_off_the_low_balance_email_still_goes(
    voice, committed, mailoutbox
):
    alerts.update_alert_settings(account=voice, now=NOW, email_zero_balance=False)

    committed(spend, voice, "50.00")

    assert [m.subject for m in mailoutbox] == [f"Low balance: $0.00 left on {voice.name}"]
    assert notices(voice, "zero_balance")[0].status == NotificationStatus.SKIPPED


def test_the_zero_email_is_re_armed_by_a_top_up(voice, committed, mailoutbox):
    committed(spend, voice, "50.00")
    committed(top_up, voice, "5.00")  # under the threshold, but above zero
    committed(spend, voice, "5.00")

    assert len(notices(voice, "zero_balance")) == 2
    assert len(notices(voice, "low_balance")) == 0


def test_a_plan_without_the_zero_alert_sends_none(voice, committed, mailoutbox):
    Plan.objects.filter(code="voice-prepaid").update(zero_balance_alert=False)

    committed(spend, voice, "50.00")

    assert notices(voice, "zero_balance") == []
    assert len(notices(voice, "low_balance")) == 1


def test_postpaid_balances_are_not_watched(make_account, committed, mailoutbox):
    account = make_account("voice-payg")

    committed(report_minutes, account, 10)

    assert notices(account, "low_balance") == notices(account, "zero_balance") == []
    assert mailoutbox == []


def test_period_close_replacing_the_included_credit_is_no_crossing(
    plans_without_fees, make_account, committed, mailoutbox
):
    account = make_account("credits-monthly")  # 50 USD included credit, nothing bought
    committed(report_minutes, account, 100)  # 10.00 USD: 40.00 left
    period_end = Subscription.objects.get(account=account).current_period_end

    # The 40.00 left expires with the period and the next 50.00 is granted, in one transaction.
    committed(close_periods, now=period_end + timedelta(hours=1))

    account.refresh_from_db()
    assert account.balance_micros == 50 * USD
    assert notices(account, "zero_balance") == notices(account, "low_balance") == []
    assert mailoutbox == []


# Hot-path cost --------------------------------------------------------------------------------


def test_the_balance_check_costs_one_query_outside_the_usage_path(voice):
    with transaction.atomic():
        locked = lock_account(voice.pk)
        with CaptureQueriesContext(connection) as balance_check:
            alerts.balance_changed(
                locked=locked, before_micros=locked.account.balance_micros + 1, now=NOW
            )

    assert len(balance_check) == 1


def test_both_alert_hooks_of_a_usage_batch_cost_no_query_when_nothing_crosses(voice):
    # Settings exist, as after an account's first charge.
    AlertSettings.objects.get_or_create(account=voice)
    with transaction.atomic():
        locked = lock_for_charge(voice.pk).locked
        subscription = Subscription.objects.select_related("plan").get(account=voice)
        with CaptureQueriesContext(connection) as hooks:
            alerts.balance_changed(
                locked=locked, before_micros=locked.account.balance_micros + 1, now=NOW
            )
            allowance_alerts.usage_charged(
                locked=locked,
                subscription=subscription,
                allowance=None,
                charged_micros=1,
                now=NOW,
            )

    assert len(hooks) == 0


def test_a_batch_of_usage_that_crosses_nothing_adds_no_query(make_account, monkeypatch):
    account = make_account("llm-api")
    report_output_tokens(account, 1_000)  # warm up: settings exist, caches are filled

    def count_queries():
        with CaptureQueriesContext(connection) as queries:
            report_output_tokens(account, 1_000)
        return len(queries)

    with_alerts = count_queries()
    monkeypatch.setattr("billing.alerts.balance.balance_changed", lambda **kwargs: None)
    monkeypatch.setattr(
        "usage.charging.session.usage_charged", lambda **kwargs: AlertSettings(has_budgets=False)
    )
    without_alerts = count_queries()

    # The alert settings are read with the account's lock (usage.charging.lock), not by the alerts.
    assert with_alerts == without_alerts


# Concurrency ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_processes_crossing_the_threshold_at_once_send_exactly_one_email(
    transactional_db, make_account
):
    from tests.billing.processes import run_in_processes

    account = make_account("voice-prepaid", credit_micros=20 * USD)  # exactly at the threshold

    results = run_in_processes(
        report_one_minute, [(account.public_id, f"race-{n}") for n in range(20)]
    )

    assert sorted(results) == [80_000] * 20  # 1 min at 0.08 USD/min, every call charged
    account.refresh_from_db()
    assert account.balance_micros == 20 * USD - 20 * 80_000
    [notice] = notices(account, "low_balance")
    assert notice.status == NotificationStatus.SENT
    assert notice.context["balance"] == "$19.92"  # the first deduction crossed, no other
    assert AlertSettings.objects.get(account=account).low_balance_crossings == 1


def report_one_minute(public_id, call_id):
    from accounts.models import Account

    call = report_minutes(Account.objects.get(public_id=public_id), 1, call_id=call_id)
    return call.charged_micros


# Allowance (N2) -------------------------------------------------------------------------------

# Calls use the included minutes of the period they connect in: a call of thousands of minutes
# ending on the day the account opens would have started before it, so these report later.
IN_FIRST_PERIOD = NOW + timedelta(days=5)


def test_included_minutes_alert_at_80_and_100_percent_once_per_period(
    make_account, committed, mailoutbox
):
    account = make_account("voice-enterprise")  # 6,000 included minutes

    committed(report_minutes, account, 4_799, now=IN_FIRST_PERIOD)
    assert notices(account, "allowance_used") == []
    committed(report_minutes, account, 1, now=IN_FIRST_PERIOD)  # 4,800: 80%
    committed(report_minutes, account, 600, now=IN_FIRST_PERIOD)  # 90%: nothing new
    committed(report_minutes, account, 600, now=IN_FIRST_PERIOD)  # 6,000: 100%
    committed(report_minutes, account, 30, now=IN_FIRST_PERIOD)  # overage: nothing new

    sent = notices(account, "allowance_used")
    start = Subscription.objects.get(account=account).current_period_start
    assert [n.key for n in sent] == [
        f"allowance_80:{account.public_id}:{start:%Y%m%d}",
        f"allowance_100:{account.public_id}:{start:%Y%m%d}",
    ]
    assert [m.subject for m in mailoutbox] == [
        f"80% of the included minutes used on {account.name}",
        f"100% of the included minutes used on {account.name}",
    ]
    assert "4,800 minutes" in mailoutbox[0].body and "6,000 minutes" in mailoutbox[0].body


def test_the_next_period_alerts_again_against_its_allowance_with_rollover(make_account, committed):
    account = make_account("voice-enterprise")  # rollover on
    committed(report_minutes, account, 4_800, now=IN_FIRST_PERIOD)

    next_month = IN_FIRST_PERIOD + timedelta(days=31)
    committed(report_minutes, account, 5_759, now=next_month)  # 1,200 rolled over: of 7,200
    assert len(notices(account, "allowance_used")) == 1
    committed(report_minutes, account, 1, now=next_month)  # 5,760 of 7,200: 80%

    first, second = notices(account, "allowance_used")
    assert first.key != second.key  # the period start is in the key
    assert second.context["included"] == "7,200 minutes"


def test_a_batch_that_jumps_past_both_levels_sends_the_100_percent_email_only(
    make_account, committed
):
    account = make_account("voice-enterprise")

    committed(report_minutes, account, 6_100, now=IN_FIRST_PERIOD)

    assert [n.context["percent"] for n in notices(account, "allowance_used")] == [100]


def test_included_credit_alerts_at_80_and_100_percent(
    plans_without_fees, make_account, committed, mailoutbox
):
    account = make_account("credits-monthly")  # 50 USD included credit, calls 0.10 USD/min
    committed(top_up, account, "100.00")  # bought credit is spent after the included credit

    committed(report_minutes, account, 399)  # 39.90 USD
    assert notices(account, "allowance_used") == []
    committed(report_minutes, account, 1)  # 40.00 USD: 80%
    committed(report_minutes, account, 100)  # 50.00 USD: 100%
    committed(report_minutes, account, 10)  # from bought credit: nothing new

    sent = notices(account, "allowance_used")
    assert [n.context["percent"] for n in sent] == [80, 100]
    assert sent[0].context["used"] == "$40.00" and sent[0].context["included"] == "$50.00"
    allowance_mail = [m for m in mailoutbox if "included credit" in m.subject]
    assert len(allowance_mail) == 2


def test_allowance_alerts_follow_the_email_choice(make_account, committed, mailoutbox):
    account = make_account("voice-enterprise")
    alerts.update_alert_settings(account=account, now=NOW, email_allowance=False)

    committed(report_minutes, account, 4_800, now=IN_FIRST_PERIOD)

    [notice] = notices(account, "allowance_used")
    assert notice.status == NotificationStatus.SKIPPED
    assert mailoutbox == []


def test_allowance_level():
    assert allowance_alerts.allowance_level(used=79, total=100) == 0
    assert allowance_alerts.allowance_level(used=80, total=100) == 80
    assert allowance_alerts.allowance_level(used=100, total=100) == 100
    assert allowance_alerts.allowance_level(used=5, total=0) == 0
