"""Counting a credit-back of usage in the rollups and on the next invoice (SPEC P4, U11)."""

from datetime import date

from django.db.models import F

from accounts.models import Account
from billing.invoicing.unbilled import UnbilledDeltas
from billing.models import LedgerEntry
from usage.charging.rollups import RollupDeltas


def record_refund(
    *,
    account: Account,
    day: date,
    component: str,
    model: str,
    entry: LedgerEntry,
    provider: str = "",
) -> None:
    """Count a credit-back (its ledger `entry`) in the rollups and, as far as it took the
    place of an invoice, on the next one (account locked by caller)."""
    amount = entry.amount_micros
    rollups = RollupDeltas()
    rollups.add(
        account_id=account.pk,
        day=day,
        component=component,
        provider=provider,
        model=model,
        refunded_micros=amount,
    )
    rollups.write()
    if account.is_prepaid:
        # A statement lists every refund; nothing on it is owed.
        off_unbilled = amount
    else:
        # WARNING (money): the credit-back already gave the amount back in the ledger, where
        # it first repaid any debt and became spendable credit for the rest. Only the debt it
        # repaid that is still waiting to be invoiced comes off the unbilled total. Taking off
        # the rest too would credit it twice: the spendable part comes off later invoices as
        # "credits applied", and the part that repaid an issued invoice comes back as credit
        # when that invoice is paid. See docs/billing-rules.md, "Postpaid: what is owed".
        debt_before = max(amount - entry.balance_after_micros, 0)
        off_unbilled = min(amount, debt_before, max(account.unbilled_micros, 0))
    if not off_unbilled:
        return
    unbilled = UnbilledDeltas()
    unbilled.add(account_id=account.pk, component="refunds", items=1, amount_micros=-off_unbilled)
    unbilled.write()
    Account.objects.filter(pk=account.pk).update(
        unbilled_micros=F("unbilled_micros") - off_unbilled
    )
    account.unbilled_micros -= off_unbilled
