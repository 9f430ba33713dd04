"""The scale generator (scripts/usage_generator.py) writes data the real services agree with.

Run at a tiny size on the test database, so that the scale run (scripts/scale_run.py) cannot
rot unnoticed: a model change that the generator does not follow, or a generator that stops
matching what charging really writes, fails here.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Count, F, Sum

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import Allowance, CreditGrant, Invoice, LedgerEntry, TopUp, UnbilledLine
from scripts.benchdb import close_periods
from scripts.usage_generator import generate_usage
from usage.models import Call, UsageEvent, UsageRollup

NOW = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)
ITEMS, ACCOUNTS = 2000, 50

# Foreign keys to check by hand: a bulk load does not fire PostgreSQL's checks.
FOREIGN_KEYS = [
    ("usage_call", "ledger_entry_id", "billing_ledgerentry"),
    ("usage_call", "account_id", "accounts_account"),
    ("usage_usageevent", "account_id", "accounts_account"),
    ("billing_ledgerentry", "account_id", "accounts_account"),
    ("billing_ledgerentry", "grant_id", "billing_creditgrant"),
    ("billing_topup", "entry_id", "billing_ledgerentry"),
    ("billing_topup", "grant_id", "billing_creditgrant"),
    ("usage_usagerollup", "account_id", "accounts_account"),
    ("billing_unbilledline", "account_id", "accounts_account"),
]


@pytest.fixture(autouse=True)
def postgres_only(db):
    if connection.vendor != "postgresql":
        pytest.skip("the generator writes with PostgreSQL's COPY")


def _orphans() -> list[str]:
    found = []
    with connection.cursor() as cursor:
        for table, column, target in FOREIGN_KEYS:
            cursor.execute(
                f"SELECT COUNT(*) FROM {table} t WHERE t.{column} IS NOT NULL"
                f" AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.id = t.{column})"
            )
            if cursor.fetchone()[0]:
                found.append(f"{table}.{column}")
    return found


def _by_account(queryset, field):
    return dict(
        queryset.values("account_id").annotate(total=Sum(field)).values_list("account_id", "total")
    )


@pytest.mark.parametrize("bulk", [False, True], ids=["row-checked", "bulk-load"])
def test_generated_usage_agrees_with_ledger_rollups_and_unbilled_lines(plans, bulk):
    generated = generate_usage(items=ITEMS, accounts=ACCOUNTS, now=NOW, seed=3, bulk=bulk)
    connection.check_constraints()  # the deferred foreign-key checks of a row-checked load

    assert (generated.calls, generated.events) == (Call.objects.count(), UsageEvent.objects.count())
    assert generated.calls + generated.events == ITEMS
    assert set(Account.objects.values_list("subscription__plan__code", flat=True)) == set(plans)
    assert _orphans() == []
    # check_ledger: every balance is the sum of its entries and, when positive, of its grants.
    assert ledger_drift() == []

    items = _by_account(Call.objects, "cost_micros")
    for account_id, cost in _by_account(UsageEvent.objects, "cost_micros").items():
        items[account_id] = items.get(account_id, 0) + cost
    rollup_items = _by_account(UsageRollup.objects.filter(is_line=False), "cost_micros")
    rollup_lines = _by_account(UsageRollup.objects.filter(is_line=True), "cost_micros")
    unbilled = _by_account(UnbilledLine.objects, "amount_micros")
    cached = dict(Account.objects.values_list("pk", "unbilled_micros"))
    assert len(items) == ACCOUNTS
    for account_id, cost in items.items():
        assert rollup_items.get(account_id, 0) == cost
        assert rollup_lines.get(account_id, 0) == cost
        assert unbilled.get(account_id, 0) == cost == cached[account_id]
    counted = UsageRollup.objects.filter(is_line=False).aggregate(n=Sum("items"))["n"]
    assert counted == ITEMS
    # Each charge is one debit of the item's cost; nothing is uncollected, nothing overdrawn.
    debits = LedgerEntry.objects.filter(amount_micros__lt=0)
    assert debits.aggregate(total=Sum("amount_micros"))["total"] == -sum(items.values())
    charged_calls = Call.objects.filter(cost_micros__gt=0)
    assert charged_calls.exists()
    assert not charged_calls.exclude(ledger_entry__amount_micros=F("cost_micros") * -1).exists()
    assert not Call.objects.filter(cost_micros=0, ledger_entry__isnull=False).exists()
    event_debits = dict(
        LedgerEntry.objects.filter(
            cause_type=ContentType.objects.get_for_model(UsageEvent)
        ).values_list("cause_id", "amount_micros")
    )
    assert event_debits == {
        str(pk): -cost
        for pk, cost in UsageEvent.objects.filter(cost_micros__gt=0).values_list(
            "pk", "cost_micros"
        )
    }
    assert not Account.objects.filter(billing_mode="prepaid", balance_micros__lt=0).exists()
    for account in Account.objects.filter(billing_mode="postpaid"):
        assert account.balance_micros == -items[account.pk]
    # Top-ups are paid, each with its grant and credit entry.
    assert TopUp.objects.filter(status="succeeded", entry__amount_micros__gt=0).count() == (
        TopUp.objects.count()
    )
    assert CreditGrant.objects.filter(kind="signup_credit").count() == (
        Account.objects.filter(subscription__plan__code="llm-api").count()
    )
    for allowance in Allowance.objects.all():
        used = UsageRollup.objects.filter(account_id=allowance.account_id, is_line=False).aggregate(
            s=Sum("allowance_seconds")
        )["s"]
        assert allowance.used_seconds == used

    # The real period close works on it: one invoice or statement per account, ledger clean.
    closed = close_periods(now=generated.period_end + timedelta(minutes=30))
    assert closed == ACCOUNTS
    per_account = (
        Invoice.objects.filter(reason="period").values("account_id").annotate(n=Count("id"))
    )
    assert {row["n"] for row in per_account} == {1}
    unbilled = _by_account(UnbilledLine.objects, "amount_micros")
    for account_id, cached in Account.objects.values_list("pk", "unbilled_micros"):
        assert cached == unbilled.get(account_id, 0)  # what is carried forward, if anything
    assert ledger_drift() == []
