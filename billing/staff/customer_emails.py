"""The customer's email about a staff money action (issue 16): a refund of usage, a credit-back,
a grant, an adjustment or a refund to the card.

It says what was done, for how much, and the reason staff wrote for the customer; never the
internal note. It goes through the one email outbox (billing.notifications), to the account's
billing contacts, recorded in the action's transaction under a key made of the action's own
idempotency key: a double submission or a retried approval records it once, and an action that
rolls back sends nothing.
"""

from accounts.models import Account
from billing.models import StaffAction
from billing.money import format_usd_exact
from billing.notifications.outbox import notify
from billing.staff.audit import Audit, audit_key

KIND = "staff_money_action"

# What the email's headline says, by action; `item` names the call, event or top-up.
HEADLINES = {
    StaffAction.REFUND_CALL: "We refunded {amount} of call {item}",
    StaffAction.REFUND_EVENT: "We refunded {amount} of usage event {item}",
    StaffAction.CREDIT_BACK: "We credited {amount} back to your balance",
    StaffAction.GRANT_CREDIT: "We added {amount} of credit to your account",
    StaffAction.REFUND_TOPUP: "We refunded {amount} of your {item} to your card",
}
ADJUSTED_UP = "We corrected your balance: {amount} added"
ADJUSTED_DOWN = "We corrected your balance: {amount} taken off"


def email_customer(*, audit: Audit, account: Account, amount_micros: int, item: str = "") -> None:
    """Record the email to the account's billing contacts about this action (sent on commit).

    `account` is as the action left it (its balance after the action).
    """
    if audit.action == StaffAction.ADJUST_BALANCE:
        headline = ADJUSTED_UP if amount_micros > 0 else ADJUSTED_DOWN
    else:
        headline = HEADLINES[audit.action]
    context = {
        "headline": headline.format(amount=format_usd_exact(abs(amount_micros)), item=item),
        "reason": audit.reason,
        "to_card": audit.action == StaffAction.REFUND_TOPUP,
        # A prepaid account reads its balance as credit; a postpaid one reads what it owes on
        # its invoices, so its balance would only confuse.
        "balance": format_usd_exact(account.balance_micros) if account.is_prepaid else "",
    }
    notify(
        account=account,
        kind=KIND,
        key=f"staff:{audit_key(audit.action, audit.key)}",
        context=context,
        now=audit.now,
    )
