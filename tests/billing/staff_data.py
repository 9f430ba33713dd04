"""Staff members, paid top-ups and snapshots for the staff-in-admin tests.

Staff members are put in the real Support and Finance groups that migration 0010 creates, so the
tests check the permissions staff actually get. Top-ups are paid through the test-mode payment
page's service (`billing.payments.simulated.complete_test_topup`), the same code the webhook drives.
Test modules import `payments_in_test_mode` (and `no_ledger_drift` from tests.usage.metering), which
then apply to every test of the module, and make their staff with `staff_member`.
"""

import itertools

import pytest
from django.contrib.auth.models import Group

from accounts.models import Account, User
from billing.models import (
    AuditRecord,
    CreditGrant,
    Invoice,
    LedgerEntry,
    Notification,
    Refund,
    RefundApproval,
    Subscription,
    TopUp,
    TopUpKind,
)
from billing.payments.simulated import complete_test_topup
from billing.payments.topups import new_topup

USD = 1_000_000
_keys = itertools.count(1)
_staff = itertools.count(1)


@pytest.fixture(autouse=True)
def payments_in_test_mode(settings):
    """No Stripe keys: top-ups are paid and refunded by the test-mode gateway (SPEC P6)."""
    settings.PAYMENTS_TEST_MODE = True
    settings.PAYMENT_GATEWAY = "billing.payments.gateway.test_mode.TestModeGateway"


def staff_member(group: str | None = None) -> User:
    """A staff user in one of the groups the migration made (Support, Finance), or in none.

    Test modules wrap it in their own fixtures (`support`, `finance`, ...).
    """
    user = User.objects.create_user(
        email=f"staff{next(_staff)}@operator.example", password="correct horse", is_staff=True
    )
    if group is not None:
        user.groups.add(Group.objects.get(name=group))
    # Read afresh: Django caches a user's permissions on the instance.
    return User.objects.get(pk=user.pk)


def new_key() -> str:
    """A form's one-time token, as the admin pages make them."""
    return f"token-{next(_keys)}"


def paid_topup(account: Account, amount_micros: int, *, now) -> TopUp:
    """A manual top-up paid on the test-mode payment page: its credit is on the balance."""
    topup = new_topup(account=account, kind=TopUpKind.MANUAL, amount_micros=amount_micros, now=now)
    topup = complete_test_topup(account=account, topup_public_id=topup.public_id, pay=True, now=now)
    assert topup.is_paid
    return TopUp.objects.select_related("grant").get(pk=topup.pk)


def balance(account: Account) -> int:
    return Account.objects.values_list("balance_micros", flat=True).get(pk=account.pk)


def audit_records(account: Account | None = None, action: str | None = None) -> list[AuditRecord]:
    rows = AuditRecord.objects.order_by("pk")
    if account is not None:
        rows = rows.filter(account=account)
    if action is not None:
        rows = rows.filter(action=action)
    return list(rows)


def everything_written() -> dict:
    """Every row a staff action can write, as comparable data: proof that nothing was written."""
    return {
        "balances": list(Account.objects.order_by("pk").values_list("pk", "balance_micros")),
        "past_due": list(Account.objects.order_by("pk").values_list("pk", "past_due_since")),
        "entries": list(LedgerEntry.objects.order_by("pk").values_list("pk", "amount_micros")),
        "grants": list(CreditGrant.objects.order_by("pk").values_list("pk", "remaining_micros")),
        "audit": AuditRecord.objects.count(),
        "refunds": list(Refund.objects.order_by("pk").values_list("pk", "status")),
        "topups": list(TopUp.objects.order_by("pk").values_list("pk", "refunded_micros")),
        "approvals": list(RefundApproval.objects.order_by("pk").values_list("pk", "status")),
        "invoices": list(Invoice.objects.order_by("pk").values_list("pk", "status")),
        "plans": list(
            Subscription.objects.order_by("pk").values_list("pk", "plan_id", "pending_plan_id")
        ),
        "notifications": Notification.objects.count(),
    }
