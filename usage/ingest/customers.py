"""Usage reported by the operator's own customer id (`customer`) instead of `account` (SPEC X1).

The id is turned into the account's public id before the report goes on, with one query on
the partial unique index of Account.external_id; from there on a report by `customer` is the
same report by `account` (same charge, same duplicate detection).
"""

import dataclasses
from datetime import datetime

from accounts.models import Account
from usage.ingest import calls
from usage.ingest.events import ingest_events
from usage.models import Call
from usage.reports import CallReport, EventReport, EventResult, NotFound


@dataclasses.dataclass(frozen=True)
class ReportedCall:
    call: Call
    changed: bool
    account: str  # public id
    customer: str | None  # external id


def account_ids(external_ids: set[str]) -> dict[str, str]:
    """Return the public id of each known external id, in one indexed query."""
    return dict(
        Account.objects.filter(external_id__in=external_ids).values_list("external_id", "public_id")
    )


def account_for_customer(external_id: str) -> str:
    """Return the public id of the account with the operator's id, or raise NotFound."""
    public_id = account_ids({external_id}).get(external_id)
    if public_id is None:
        raise NotFound(f"No customer '{external_id}'.", param="customer")
    return public_id


def ingest_customer_events(*, reports: list[EventReport], now: datetime) -> list[EventResult]:
    """Ingest a batch whose events name their account or their customer; one result per event,
    in order. An event of an unknown customer is rejected alone (404), like an unknown account.
    """
    customers = {report.customer for report in reports if report.customer}
    if not customers:
        return ingest_events(reports=reports, now=now)
    known = account_ids(customers)
    resolved, rejected = [], {}
    for index, report in enumerate(reports):
        if not report.customer:
            resolved.append(report)
        elif report.customer in known:
            resolved.append(
                dataclasses.replace(report, account=known[report.customer], customer="")
            )
        else:
            rejected[index] = EventResult(
                report.id, "rejected", reason=f"no customer '{report.customer}'", code=404
            )
    charged = iter(ingest_events(reports=resolved, now=now) if resolved else [])
    return [rejected[i] if i in rejected else next(charged) for i in range(len(reports))]


def report_customer_call(*, report: CallReport, now: datetime) -> ReportedCall:
    """Report a call that names its account or its customer; the answer names both."""
    customer = report.customer or None
    if customer is not None:
        report = dataclasses.replace(report, account=account_for_customer(customer), customer="")
    call, changed = calls.report_call(report=report, now=now)
    if customer is None:
        # Reported by account: the answer names the customer too (a primary-key read).
        customer = (
            Account.objects.filter(pk=call.account_id).values_list("external_id", flat=True).get()
        )
    return ReportedCall(call=call, changed=changed, account=report.account, customer=customer)
