"""Writing many rows at once: grouped updates, COPY inserts, notifications of new invoices."""

import pytest
from django.db import IntegrityError, transaction

from accounts.models import Account
from billing.db.bulk_insert import (
    allocate_ids,
    copy_available,
    copy_insert,
    insert_objects,
    insert_rows,
)
from billing.db.row_updates import FEW_VALUES, update_by_pk
from billing.models import Invoice, InvoiceLine, Notification
from billing.notifications.outbox import Notice, notify_new
from tests.conftest import NOW
from usage.models import UsageEvent

LINE_NAMES = [
    "invoice_id",
    "position",
    "component",
    "provider",
    "model",
    "description",
    "items",
    "quantity",
    "unit",
    "amount_micros",
    "savings_micros",
]


@pytest.fixture
def accounts(make_ledger_account):
    return [make_ledger_account() for _ in range(3 * FEW_VALUES)]


def unbilled_of(accounts) -> dict[int, int]:
    return dict(
        Account.objects.filter(pk__in=[a.pk for a in accounts]).values_list("pk", "unbilled_micros")
    )


def test_rows_sharing_a_value_are_set_by_value(accounts):
    values = {a.pk: (0 if n % 3 else -7) for n, a in enumerate(accounts)}

    update_by_pk(Account, "unbilled_micros", values)

    assert unbilled_of(accounts) == values


def test_rows_each_with_its_own_value_get_their_own_value(accounts):
    # More distinct values than FEW_VALUES: one UPDATE ... FROM (VALUES ...) on both databases.
    values = {a.pk: 1_000_000 * n - 5 for n, a in enumerate(accounts)}
    untouched = Account.objects.create(name="Other", email="other@example.test")

    update_by_pk(Account, "unbilled_micros", values)

    assert unbilled_of(accounts) == values
    assert unbilled_of([untouched]) == {untouched.pk: 0}


def test_only_integer_columns_can_be_set_by_pk(accounts):
    with pytest.raises(TypeError):
        update_by_pk(Account, "name", {accounts[0].pk: "x"})


def test_inserted_objects_get_their_keys_and_read_back_as_written(accounts):
    invoices = [
        Invoice(
            account=account,
            number=f"2026-{n:06d}",
            kind="statement",
            reason="period",
            status="paid",
            period_start=NOW,
            period_end=NOW,
            idempotency_key=f"test:{n}",
            total_micros=n,
            created_at=NOW,
        )
        for n, account in enumerate(accounts[:3], start=1)
    ]

    insert_objects(Invoice, invoices)
    insert_rows(
        InvoiceLine,
        LINE_NAMES,
        [(i.pk, 1, "llm", "", "", "Call minutes", 1, 60, "s", i.total_micros, 0) for i in invoices],
    )

    assert all(invoice.pk for invoice in invoices)
    assert list(
        Invoice.objects.order_by("pk").values_list("pk", "account_id", "number", "total_micros")
    ) == [(i.pk, i.account_id, i.number, i.total_micros) for i in invoices]
    assert sorted(InvoiceLine.objects.values_list("invoice_id", "amount_micros")) == [
        (i.pk, i.total_micros) for i in invoices
    ]


def test_rows_copied_as_dicts_read_back_as_written_with_defaults_and_json(accounts):
    if not copy_available():
        pytest.skip("COPY is PostgreSQL's")
    account = accounts[0]
    explanation = {"rule": 'prix « spécial » \\ "quoted"', "lines": [{"quantity": 3}], "n": None}
    common = {
        "account_id": account.pk,
        "type": "llm",
        "occurred_at": NOW,
        "content_hash": "h" * 64,
        "provider": "openai",
        "start_within": "",
        "quantity": 1,
        "cost_micros": 5,
        "created_at": NOW,
    }
    rows = [
        {"event_id": "with-explanation", "model": "", "explanation": explanation, **common},
        {"event_id": "without-explanation", "model": "gpt-4o", **common},  # defaults: JSON, ints
    ]
    for row, pk in zip(rows, allocate_ids(UsageEvent, len(rows)), strict=True):
        row["id"] = pk

    copy_insert(UsageEvent, rows)

    first, second = UsageEvent.objects.order_by("pk")
    assert (first.pk, first.event_id, first.explanation) == (
        rows[0]["id"],
        "with-explanation",
        explanation,
    )
    assert (first.model, first.provider, first.ledger_entry_id) == ("", "openai", None)
    assert (second.event_id, second.model, second.explanation) == (
        "without-explanation",
        "gpt-4o",
        {},
    )
    assert (second.occurred_at, second.cost_micros, second.output_tokens) == (NOW, 5, 0)


def test_rows_inserted_without_some_fields_are_refused():
    # COPY would leave them to the database, which knows none of Django's defaults.
    with pytest.raises(ValueError, match="missing: items, model, provider"):
        insert_rows(
            InvoiceLine,
            [n for n in LINE_NAMES if n not in ("items", "model", "provider")],
            [],
        )


def test_a_new_notification_is_recorded_with_its_context(accounts):
    notices = [
        Notice(account=a, kind="invoice_issued", key=f"invoice_issued:{n}", context={"n": n})
        for n, a in enumerate(accounts[:2])
    ]

    assert notify_new(notices=notices, now=NOW) == 2

    assert sorted(Notification.objects.values_list("key", "context", "status")) == [
        ("invoice_issued:0", {"n": 0}, "pending"),
        ("invoice_issued:1", {"n": 1}, "pending"),
    ]


def test_a_new_notification_whose_key_exists_fails_rather_than_emails_twice(accounts):
    notice = Notice(account=accounts[0], kind="invoice_issued", key="invoice_issued:1", context={})
    notify_new(notices=[notice], now=NOW)

    with pytest.raises(IntegrityError), transaction.atomic():
        notify_new(notices=[notice], now=NOW)

    assert Notification.objects.count() == 1
