"""Notification emails: parts, figures and links, once per key, choices, retries (SPEC N3, P5)."""

import smtplib
from datetime import timedelta

import pytest
from django.test import override_settings

from billing import tasks
from billing.alerts import balance as alerts
from billing.invoicing.invoices import invoice_thresholds
from billing.invoicing.period_close import close_periods
from billing.models import (
    EntryKind,
    InvoiceStatus,
    Notification,
    NotificationStatus,
    PaymentStatus,
)
from billing.notifications import sending
from billing.notifications.outbox import Notice, notify, notify_many
from billing.notifications.sending import send_notification
from billing.payments.collection import collect_invoice
from tests.billing import money_and_notices as alerting
from tests.billing.money_and_notices import USD, notices, report_minutes, spend
from tests.billing.postings import post_entry
from tests.billing.usage_reports import add_card, report_usage_of_458_usd
from tests.conftest import NOW
from usage.pages.runway import (
    average_daily_spend_micros,
    credit_runway_days,
    runway_of_grants,
    runway_sentence,
)

committed = alerting.committed  # fixtures
no_ledger_drift = alerting.no_ledger_drift


@pytest.fixture(autouse=True)
def fresh_test_gateway(monkeypatch):
    """The test-mode gateway remembers answers per key for the process; forget them."""
    from billing.payments.gateway.test_mode import TestModeGateway

    monkeypatch.setattr(TestModeGateway, "_results", {})


@pytest.fixture
def account(make_account, make_user):
    owner = make_user(email="owner@example.test")
    account = make_account(
        "voice-prepaid", owner=owner, name="Smith & Daughters", credit_micros=50 * USD
    )
    account.extra_billing_emails = "books@example.test\nowner@example.test\n"
    account.save(update_fields=["extra_billing_emails"])
    return account


# Every kind: an HTML and a text part, the account, the figures and the right link ---------------

BILLING = "/billing/"
SAMPLES = {
    "low_balance": ({"balance": "$19.99", "threshold": "$20.00"}, "$19.99", BILLING),
    "zero_balance": ({"balance": "$0.00"}, "$0.00", BILLING),
    "allowance_used": (
        {
            "percent": 80,
            "used": "4,800 minutes",
            "included": "6,000 minutes",
            "remaining": "1,200 minutes",
            "is_credit": False,
            "resets_on": "15 April 2026",
        },
        "4,800 minutes",
        "/app/a/",
    ),
    "budget_reached": (
        {
            "name": "Production key",
            "label": "Production key: 50.00 USD",
            "amount": "$50.00",
            "spend": "$50.20",
            "hard": True,
            "key_name": "Production",
            "key_prefix": "mlk_1234",
            "period_end": "15 April 2026",
        },
        "$50.20",
        BILLING,
    ),
    "auto_topup_succeeded": ({"amount": "$25.00", "balance": "$44.99"}, "$25.00", BILLING),
    "auto_topup_failed": (
        {"amount": "$25.00", "reason": "declined", "error": "Your card was declined."},
        "$25.00",
        BILLING,
    ),
    "auto_topup_action_required": (
        {"amount": "$25.00", "action_url": "http://testserver/app/a/x/topups/t1/resume/"},
        "$25.00",
        "/topups/t1/resume/",
    ),
    "invoice_issued": (
        {
            "number": "2026-000042",
            "amount_due": "$458.00",
            "total": "$458.00",
            "period_start": "15 March 2026",
            "period_end": "15 April 2026",
            "invoice_url": "http://testserver/app/a/x/invoices/2026-000042/",
        },
        "$458.00",
        "/invoices/2026-000042/",
    ),
    "invoice_paid": (
        {
            "number": "2026-000042",
            "amount_due": "$458.00",
            "invoice_url": "http://testserver/app/a/x/invoices/2026-000042/",
        },
        "$458.00",
        "/invoices/2026-000042/",
    ),
    "invoice_payment_failed": (
        {
            "number": "2026-000042",
            "amount_due": "$458.00",
            "next_attempt": "16 March 2026",
            "invoice_url": "http://testserver/app/a/x/invoices/2026-000042/",
        },
        "$458.00",
        BILLING,
    ),
    "topup_receipt": ({"amount": "$20.00", "balance": "$70.00"}, "$20.00", BILLING),
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_email_has_a_text_and_an_html_part_with_the_account_figures_and_link(
    kind, account, committed, mailoutbox
):
    context, figure, link = SAMPLES[kind]

    committed(notify, account=account, kind=kind, key=f"sample:{kind}", context=context, now=NOW)

    [message] = mailoutbox
    assert message.subject and "\n" not in message.subject
    assert message.to == ["owner@example.test", "books@example.test"]
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    assert "Smith & Daughters" in message.body and "Smith &amp; Daughters" in html
    assert figure in message.body and figure in html
    assert link in message.body and link in html
    assert "{{" not in message.body + html and "{%" not in message.body + html


def test_the_low_balance_email_says_how_long_the_credit_lasts(make_account, committed, mailoutbox):
    account = make_account("voice-prepaid", credit_micros=30 * USD, at=NOW - timedelta(days=30))
    for day in range(14):  # 25 min a day at 0.08 USD/min: 2.00 USD a day
        report_minutes(account, 25, now=NOW - timedelta(days=day))
    account.refresh_from_db()
    assert account.balance_micros == 2 * USD

    committed(spend, account, "0.50")  # 1.50: nothing crosses, it was below 20 already
    alerts.update_alert_settings(account=account, low_balance_threshold_micros=USD, now=NOW)
    committed(spend, account, "0.60")  # 0.90 left: about 0.45 days

    [message] = mailoutbox
    assert "At your recent usage, your credit lasts less than a day." in message.body


# Runway ---------------------------------------------------------------------------------------


def test_runway_is_the_balance_over_the_average_daily_spend_of_the_last_14_days(make_account):
    account = make_account("voice-prepaid", credit_micros=100 * USD, at=NOW - timedelta(days=40))
    report_minutes(account, 100, now=NOW - timedelta(days=20))  # 8.00 USD, outside the window
    for day in range(14):
        report_minutes(account, 25, now=NOW - timedelta(days=day))  # 2.00 USD a day
    account.refresh_from_db()
    assert account.balance_micros == 64 * USD

    assert average_daily_spend_micros(account=account, now=NOW) == 2 * USD
    assert credit_runway_days(account=account, now=NOW) == 32
    assert runway_sentence(32) == "At your recent usage, your credit lasts about 32 days."


def test_a_young_account_is_averaged_over_the_days_it_has_existed(make_account):
    account = make_account("voice-prepaid", credit_micros=10 * USD, at=NOW - timedelta(days=1))
    report_minutes(account, 25, now=NOW)  # 2.00 USD in two days

    assert average_daily_spend_micros(account=account, now=NOW) == USD
    account.refresh_from_db()
    assert credit_runway_days(account=account, now=NOW) == 8


def test_credit_that_expires_counts_only_for_what_is_spent_before_it_expires(make_account):
    account = make_account("voice-prepaid", credit_micros=38 * USD, at=NOW - timedelta(days=40))
    for day in range(14):
        report_minutes(account, 25, now=NOW - timedelta(days=day))  # 2.00 USD a day
    # 30 USD of included credit that resets in a day and a half: 3.00 USD of it can be spent.
    post_entry(
        account=account,
        amount_micros=30 * USD,
        kind=EntryKind.ALLOWANCE,
        now=NOW,
        grant_expires_at=NOW + timedelta(days=1, hours=12),
    )
    account.refresh_from_db()
    assert account.balance_micros == 40 * USD  # 20 days at 2.00 USD, were it all to last

    assert credit_runway_days(account=account, now=NOW) == 6  # 1.5 days, then 10 USD: 5 days


def test_the_runway_of_grants_follows_the_spending_order():
    tomorrow = NOW + timedelta(days=1)

    assert runway_of_grants([(10 * USD, None)], daily_micros=2 * USD, now=NOW) == 5
    assert (
        runway_of_grants([(30 * USD, tomorrow), (10 * USD, None)], daily_micros=2 * USD, now=NOW)
        == 6
    )  # 1 day of the expiring credit, then 5
    assert runway_of_grants([(30 * USD, NOW - timedelta(hours=1))], daily_micros=USD, now=NOW) == 0


def test_no_runway_without_usage_or_for_postpaid_accounts(make_account):
    assert (
        credit_runway_days(account=make_account("voice-prepaid", credit_micros=USD), now=NOW)
        is None
    )
    assert credit_runway_days(account=make_account("voice-payg"), now=NOW) is None
    assert runway_sentence(None) == ""


# Invoices --------------------------------------------------------------------------------------


@pytest.fixture
def payg(make_account):
    return make_account("voice-payg", name="Payg Co")


def test_an_issued_threshold_invoice_is_emailed_with_its_amount_and_page(
    payg, committed, mailoutbox
):
    report_usage_of_458_usd(payg, now=NOW)

    [invoice] = committed(invoice_thresholds, now=NOW)

    [message] = mailoutbox
    assert message.subject == f"Invoice {invoice.number} for Payg Co: $458.00"
    assert f"/app/a/{payg.public_id}/invoices/{invoice.number}/" in message.body
    assert notices(payg, "invoice_issued")[0].key == f"invoice_issued:{invoice.number}"


def test_period_close_emails_invoices_due_but_not_statements_or_nothing_due(
    payg, make_account, committed, mailoutbox
):
    prepaid = make_account("voice-prepaid", credit_micros=10 * USD)
    idle = make_account("voice-payg")
    report_minutes(payg, 10)  # 1.40 USD
    report_minutes(prepaid, 10)
    period_end = payg.subscription.current_period_end

    committed(close_periods, now=period_end + timedelta(hours=1))
    committed(close_periods, now=period_end + timedelta(hours=2))  # again: nothing new

    [message] = mailoutbox
    assert "$1.40" in message.subject
    assert [n.account_id for n in Notification.objects.filter(kind="invoice_issued")] == [payg.pk]
    assert notices(prepaid, "invoice_issued") == notices(idle, "invoice_issued") == []


def test_a_paid_invoice_is_emailed(payg, committed, mailoutbox):
    add_card(payg)
    report_usage_of_458_usd(payg, now=NOW)
    [invoice] = committed(invoice_thresholds, now=NOW)

    payment = committed(collect_invoice, invoice_id=invoice.pk, now=NOW)

    assert payment.status == PaymentStatus.SUCCEEDED
    assert [m.subject for m in mailoutbox][-1] == f"Invoice {invoice.number} paid: $458.00"


def test_each_failed_invoice_payment_is_emailed_with_the_next_attempt(payg, committed, mailoutbox):
    add_card(payg, "decline")  # a test-mode card that is declined
    report_usage_of_458_usd(payg, now=NOW)
    [invoice] = committed(invoice_thresholds, now=NOW)

    committed(collect_invoice, invoice_id=invoice.pk, now=NOW)
    committed(collect_invoice, invoice_id=invoice.pk, now=NOW + timedelta(days=1))

    failed = notices(payg, "invoice_payment_failed")
    assert [n.key for n in failed] == [
        f"invoice_payment_failed:{invoice.number}:1",
        f"invoice_payment_failed:{invoice.number}:2",
    ]
    last = mailoutbox[-1]
    assert last.subject == f"Payment of invoice {invoice.number} failed"
    assert "We will try again on 19 March 2026." in last.body  # 3 days after the 2nd failure
    assert "paused" in last.body
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


# Once per key, retries, choices -----------------------------------------------------------------


def test_one_key_is_recorded_and_sent_once(account, committed, mailoutbox):
    for _ in range(3):
        committed(notify, account=account, kind="zero_balance", key="same", context={}, now=NOW)

    assert Notification.objects.filter(key="same").count() == 1
    assert len(mailoutbox) == 1


def test_a_task_delivered_twice_sends_once(account, committed, mailoutbox):
    notice = committed(
        notify, account=account, kind="topup_receipt", key="k", context={"amount": "$5"}, now=NOW
    )

    assert send_notification(notice.pk) == "nothing to send"
    assert send_notification(notice.pk) == "nothing to send"

    assert len(mailoutbox) == 1
    notice.refresh_from_db()
    assert notice.status == NotificationStatus.SENT
    assert notice.recipients == "owner@example.test, books@example.test"


def test_a_kind_turned_off_is_recorded_as_skipped_and_not_sent(account, committed, mailoutbox):
    alerts.update_alert_settings(account=account, now=NOW, email_low_balance=False)

    committed(spend, account, "31.00")

    [notice] = notices(account, "low_balance")
    assert notice.status == NotificationStatus.SKIPPED and notice.sent_at is None
    assert mailoutbox == []


def test_emails_about_money_not_taken_cannot_be_turned_off(account, committed, mailoutbox):
    alerts.update_alert_settings(
        account=account,
        now=NOW,
        email_low_balance=False,
        email_zero_balance=False,
        email_allowance=False,
        email_invoices=False,
        email_receipts=False,
    )

    for kind in ("invoice_payment_failed", "auto_topup_failed", "auto_topup_action_required"):
        context, _, _ = SAMPLES[kind]
        committed(notify, account=account, kind=kind, key=kind, context=context, now=NOW)
    for kind in ("invoice_issued", "invoice_paid", "topup_receipt", "auto_topup_succeeded"):
        context, _, _ = SAMPLES[kind]
        committed(notify, account=account, kind=kind, key=kind, context=context, now=NOW)

    assert len(mailoutbox) == 3
    skipped = Notification.objects.filter(account=account, status=NotificationStatus.SKIPPED)
    assert skipped.count() == 4


def test_unknown_email_choices_are_refused(account):
    with pytest.raises(ValueError, match="email_sms"):
        alerts.update_alert_settings(account=account, now=NOW, email_sms=False)


def test_a_failed_send_stays_pending_and_the_sweep_sends_it_later(
    account, committed, mailoutbox, monkeypatch
):
    def smtp_down(self, fail_silently=False):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    with monkeypatch.context() as patch:
        patch.setattr("django.core.mail.EmailMultiAlternatives.send", smtp_down)
        committed(notify, account=account, kind="zero_balance", key="z", context={}, now=NOW)

    notice = Notification.objects.get(key="z")
    assert notice.status == NotificationStatus.PENDING
    assert notice.attempts == 1 and "SMTPServerDisconnected" in notice.error
    assert sending.send_pending_notifications(now=NOW + timedelta(minutes=5)) == 0

    assert sending.send_pending_notifications(now=NOW + timedelta(minutes=11)) == 1
    notice.refresh_from_db()
    assert notice.status == NotificationStatus.SENT
    assert len(mailoutbox) == 1


def test_a_send_that_keeps_failing_is_given_up_after_five_attempts(account, monkeypatch):
    def smtp_down(self, fail_silently=False):
        raise smtplib.SMTPServerDisconnected("down")

    monkeypatch.setattr("django.core.mail.EmailMultiAlternatives.send", smtp_down)
    notice = Notification.objects.create(account=account, kind="zero_balance", key="z")

    for _ in range(sending.MAX_ATTEMPTS):
        with pytest.raises(smtplib.SMTPException):
            send_notification(notice.pk)

    notice.refresh_from_db()
    assert notice.status == NotificationStatus.FAILED
    assert notice.attempts == sending.MAX_ATTEMPTS


def test_many_notifications_are_recorded_with_one_insert_and_once_per_key(
    account, payg, committed, mailoutbox
):
    notices_ = [
        Notice(account=a, kind="zero_balance", key=f"bulk:{a.pk}", context={})
        for a in (account, payg)
    ]

    assert committed(notify_many, notices=notices_, now=NOW) == 2
    assert committed(notify_many, notices=notices_, now=NOW) == 0

    assert len(mailoutbox) == 2
    assert Notification.objects.filter(key__startswith="bulk:").count() == 2


@override_settings(NOTIFICATIONS_SYNC=False)
def test_sending_is_queued_to_the_task_worker_when_the_transaction_commits(
    account, django_capture_on_commit_callbacks, monkeypatch, mailoutbox
):
    queued = []
    monkeypatch.setattr(
        "billing.task_queue.async_task", lambda func, **kwargs: queued.append((func, kwargs))
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notice = notify(account=account, kind="zero_balance", key="q", context={}, now=NOW)
    assert queued == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()

    assert queued == [("billing.tasks.send_notification", {"notification_id": notice.pk})]
    assert mailoutbox == []
    assert tasks.send_notification(notification_id=notice.pk) == "sent"  # what the worker runs


# Lock order: a delivery never waits for the account row ----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_sending_does_not_wait_for_a_deduction_that_holds_the_account(make_account, mailoutbox):
    # A deduction holds the account and may retract this very notification (alerts), so a
    # delivery that locked the account after the notification deadlocked with it.
    from django.db import connection, connections

    if not connection.features.has_select_for_update_of:
        pytest.skip("row locks of one table of a join: PostgreSQL only")
    account = make_account(credit_micros=10 * USD)
    notice = Notification.objects.create(
        account=account, kind="topup_receipt", key="lock-order", context={"amount": "$5"}
    )
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            other.set_autocommit(False)
            cursor.execute("SELECT id FROM accounts_account WHERE id = %s FOR UPDATE", [account.pk])
            with connection.cursor() as mine:
                mine.execute("SET lock_timeout = '3s'")
            assert send_notification(notice.pk) == "sent"
    finally:
        other.rollback()
        other.close()
    assert len(mailoutbox) == 1
