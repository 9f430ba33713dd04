"""What the staff-action tests share that is not a fixture: dates, the accounts' invoices and
ledger rows, and every action by name (fixtures are in conftest.py).
"""

from datetime import timedelta

from billing import staff
from billing.invoicing.invoices import invoice_thresholds
from billing.models import Invoice, LedgerEntry, Plan, Rate, RateComponent, TopUp
from billing.payments.collection import collect_invoice
from tests.billing.staff_data import USD
from tests.billing.usage_reports import report_usage_of_458_usd
from tests.conftest import NOW
from tests.usage.metering import sms
from usage.ingest.events import ingest_events
from usage.ingest.staff_refunds import refund_usage_by_staff
from usage.models import UsageEvent

SUPPORT_LIMIT = 100 * USD  # settings.SUPPORT_GRANT_LIMIT_MICROS by default
ISSUED = NOW + timedelta(days=3)
LATER = ISSUED + timedelta(hours=1)


def topup_of(account) -> TopUp:
    return TopUp.objects.select_related("grant", "account").get(account=account)


def past_due_invoice(account, *, at) -> Invoice:
    """Charge 458 USD of usage to the account, invoice it and fail to collect it."""
    report_usage_of_458_usd(account, now=at)
    [invoice] = invoice_thresholds(now=at)
    collect_invoice(invoice_id=invoice.pk, now=at)
    return Invoice.objects.get(pk=invoice.pk)


def charged_event(report) -> UsageEvent:
    """Ingest one event report and return the stored event, which must have been charged."""
    [result] = ingest_events(reports=[report], now=NOW)
    assert result.status == "accepted", result
    event = UsageEvent.objects.get(event_id=report.id)
    assert event.charged_micros > 0
    return event


def charged_sms(account, count: int = 3) -> UsageEvent:
    """An SMS event of `account`, charged at an account rate (the voice plans price no SMS)."""
    Rate.objects.get_or_create(
        account=account,
        component=RateComponent.SMS,
        defaults={"price": "0.0079", "effective_from": NOW.replace(day=1)},
    )
    return charged_event(sms(account, count))


def fresh_account(account):
    return type(account).objects.get(pk=account.pk)


def ledger_rows(account) -> list[tuple]:
    return list(
        LedgerEntry.objects.filter(account=account)
        .order_by("pk")
        .values_list("pk", "kind", "amount_micros", "balance_after_micros")
    )


# The actions, by name, as a test calls them: (actor, scene, key) -> Outcome ----------------------


ACTIONS = {
    "credit back": lambda actor, s, key: staff.credit_back(
        account=s["account"], amount_micros=5 * USD, reason="r", actor=actor, key=key, now=NOW
    ),
    "grant": lambda actor, s, key: staff.grant_credit(
        account=s["account"], amount_micros=5 * USD, reason="r", actor=actor, key=key, now=NOW
    ),
    "adjust": lambda actor, s, key: staff.adjust_balance(
        account=s["account"], amount_micros=-5 * USD, reason="r", actor=actor, key=key, now=NOW
    ),
    "refund call": lambda actor, s, key: refund_usage_by_staff(
        item=s["call"],
        amount_micros=s["call"].charged_micros,
        reason="r",
        note="",
        actor=actor,
        key=key,
        now=NOW,
    ),
    "refund event": lambda actor, s, key: refund_usage_by_staff(
        item=s["event"],
        amount_micros=s["event"].charged_micros,
        reason="r",
        note="",
        actor=actor,
        key=key,
        now=NOW,
    ),
    "refund top-up": lambda actor, s, key: staff.refund_topup(
        topup=s["topup"], amount_micros=5 * USD, reason="r", actor=actor, key=key, now=NOW
    ),
    "change plan": lambda actor, s, key: staff.change_plan(
        account=s["account"],
        plan=Plan.objects.get(code="voice-prepaid-plus"),
        when="now",
        reason="r",
        actor=actor,
        key=key,
        now=NOW,
    ),
    "void": lambda actor, s, key: staff.void_invoice(
        invoice=s["invoice"], reason="r", actor=actor, key=key, now=LATER
    ),
    "uncollectible": lambda actor, s, key: staff.mark_uncollectible(
        invoice=s["invoice"], reason="r", actor=actor, key=key, now=LATER
    ),
    "resend": lambda actor, s, key: staff.resend_invoice(
        invoice=s["invoice"], actor=actor, key=key, now=LATER
    ),
    "approve allowance": lambda actor, s, key: staff.approve_allowance(
        account=s["locked_child"], reason="r", actor=actor, key=key, now=NOW
    ),
}
FINANCE_ONLY = [
    "adjust",
    "refund top-up",
    "change plan",
    "void",
    "uncollectible",
    "approve allowance",
]
