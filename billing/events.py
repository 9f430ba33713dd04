"""What billing tells the operator's platform by webhook: the data of each event, built in one
place and emitted by the service that causes it, in the cause's transaction
(`webhooks.events.emit`; the types and examples are in docs/webhooks.md).

Money is the API's decimal string of USD (`micros_to_api`); every event's data also names the
customer by both ids (`customer`: the operator's external id, `account`: `acc_…`).
"""

from collections.abc import Iterable
from datetime import datetime

from accounts.models import Account
from billing.models import Invoice, Plan, TopUp
from billing.models.payments import Refund
from billing.money import micros_to_api
from webhooks.events import Event, emit, emit_many, retract


def customer_data(account: Account, *, plan: Plan) -> dict:
    return {
        "name": account.name,
        "email": account.email,
        "billing_emails": account.billing_emails,
        "metadata": account.metadata,
        "parent": account.parent.public_id if account.parent_id else None,
        "plan": plan.code,
        "balance": micros_to_api(account.balance_micros),
        "created_at": account.created_at,
    }


def customer_created(*, account: Account, plan: Plan, now: datetime) -> None:
    emit("customer.created", customer_data(account, plan=plan), account=account, now=now)


def customer_updated(
    *, account: Account, plan: Plan, changed: Iterable[str], now: datetime
) -> None:
    """`changed`: the names of the fields that changed (`name`, `plan`, ...)."""
    emit(
        "customer.updated",
        {**customer_data(account, plan=plan), "changed": sorted(changed)},
        account=account,
        now=now,
    )


def credit_granted(
    *, account: Account, amount_micros: int, kind: str, expires_at, reason: str, now: datetime
) -> None:
    emit(
        "credit.granted",
        {
            "amount": micros_to_api(amount_micros),
            "kind": kind,
            "expires_at": expires_at,
            "reason": reason,
            "balance": micros_to_api(account.balance_micros),
        },
        account=account,
        now=now,
    )


def balance_crossed(
    event_type: str, *, account: Account, threshold_micros: int, now: datetime
) -> None:
    """balance.low (below the threshold) or balance.depleted (zero or less)."""
    emit(
        event_type,
        {
            "balance": micros_to_api(account.balance_micros),
            "threshold": micros_to_api(threshold_micros),
        },
        account=account,
        now=now,
    )


def balance_alerts_withdrawn(*, account: Account, now: datetime) -> None:
    """Take back the balance events of this instant (`_retract_same_instant_alerts`)."""
    retract(account=account, types=["balance.low", "balance.depleted"], now=now)


def allowance_threshold_reached(
    *, account: Account, percent: int, used: int, included: int, unit: str, start, end, now
) -> None:
    """`unit` is `seconds` (included minutes) or `usd` (included credit, in micros here)."""

    def amount(value: int):
        return micros_to_api(value) if unit == "usd" else value

    emit(
        "allowance.threshold_reached",
        {
            "percent": percent,
            "unit": unit,
            "used": amount(used),
            "included": amount(included),
            "period_start": start,
            "period_end": end,
        },
        account=account,
        now=now,
    )


def topup_data(topup: TopUp, *, balance_micros: int | None = None) -> dict:
    data = {
        "id": topup.public_id,
        "kind": topup.kind,
        "status": topup.status,
        "amount": micros_to_api(topup.amount_micros),
        "error": topup.error,
    }
    if balance_micros is not None:
        data["balance"] = micros_to_api(balance_micros)
    return data


def topup_event(
    event_type: str, *, topup: TopUp, now: datetime, balance_micros: int | None = None, **extra
) -> None:
    """topup.* and auto_topup.* (recurring credit purchases are auto-top-ups' kin: their
    `kind` says which)."""
    emit(
        event_type,
        {**topup_data(topup, balance_micros=balance_micros), **extra},
        account=topup.account,
        now=now,
    )


def invoice_data(invoice: Invoice) -> dict:
    return {
        "number": invoice.number,
        "kind": invoice.kind,
        "reason": invoice.reason,
        "status": invoice.status,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "total": micros_to_api(invoice.total_micros),
        "amount_due": micros_to_api(invoice.amount_due_micros),
        "amount_paid": micros_to_api(invoice.amount_paid_micros),
        "issued_at": invoice.issued_at,
        "due_at": invoice.due_at,
    }


def invoices_issued(*, invoices: Iterable[Invoice], now: datetime) -> None:
    emit_many([Event("invoice.issued", invoice_data(i), i.account) for i in invoices], now=now)


def invoice_event(event_type: str, *, invoice: Invoice, now: datetime, **extra) -> None:
    """invoice.paid or invoice.payment_failed."""
    emit(event_type, {**invoice_data(invoice), **extra}, account=invoice.account, now=now)


def account_past_due(*, account: Account, invoice: Invoice, now: datetime) -> None:
    emit("account.past_due", {"invoice": invoice.number}, account=account, now=now)


def account_reinstated(*, account: Account, now: datetime) -> None:
    emit("account.reinstated", {}, account=account, now=now)


def refund_succeeded(*, refund: Refund, topup: TopUp, now: datetime) -> None:
    emit(
        "refund.succeeded",
        {
            "topup": topup.public_id,
            "amount": micros_to_api(refund.amount_micros),
            "reason": refund.reason,
        },
        account=topup.account,
        now=now,
    )
