"""Saved cards: a new card retries unpaid invoices at once and re-arms auto-top-up (P2, P5)."""

from billing.models import (
    AutoTopUpSettings,
    Invoice,
    InvoiceKind,
    InvoiceReason,
    InvoiceStatus,
    PaymentStatus,
)
from billing.payments.cards import add_test_card, remove_card
from billing.payments.gateway.protocol import default_card
from tests.conftest import NOW

USD = 1_000_000


def open_invoice(account):
    return Invoice.objects.create(
        account=account,
        number=f"2026-{account.pk:06d}",
        kind=InvoiceKind.INVOICE,
        reason=InvoiceReason.THRESHOLD,
        status=InvoiceStatus.OPEN,
        period_start=NOW,
        period_end=NOW,
        idempotency_key=f"threshold:{account.pk}",
        subtotal_micros=200 * USD,
        total_micros=200 * USD,
        amount_due_micros=200 * USD,
        created_at=NOW,
    )


def test_adding_a_card_charges_the_unpaid_invoice_at_once(
    make_account, django_capture_on_commit_callbacks
):
    account = make_account("voice-payg")
    invoice = open_invoice(account)

    with django_capture_on_commit_callbacks(execute=True):
        add_test_card(account=account, behaviour="succeed", now=NOW)

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.payments.get().status == PaymentStatus.SUCCEEDED


def test_a_new_card_rearms_auto_topup(make_account, django_capture_on_commit_callbacks):
    account = make_account()
    AutoTopUpSettings.objects.create(
        account=account,
        enabled=True,
        threshold_micros=10 * USD,
        amount_micros=20 * USD,
        armed=False,
        consecutive_failures=3,
    )

    with django_capture_on_commit_callbacks(execute=True):
        add_test_card(account=account, behaviour="succeed", now=NOW)

    row = AutoTopUpSettings.objects.get(account=account)
    assert (row.armed, row.consecutive_failures) == (True, 0)


def auto_topup_on(account):
    return AutoTopUpSettings.objects.create(
        account=account, enabled=True, threshold_micros=5 * USD, amount_micros=20 * USD
    )


def test_removing_the_default_card_makes_the_chosen_card_the_default(make_account):
    account = make_account()
    first = add_test_card(account=account, behaviour="succeed", now=NOW)
    second = add_test_card(account=account, behaviour="decline", now=NOW)
    third = add_test_card(account=account, behaviour="succeed", now=NOW)
    auto_topup_on(account)

    turned_off = remove_card(account=account, card_id=first.pk, now=NOW, new_default_id=third.pk)

    assert turned_off is False
    second.refresh_from_db(), third.refresh_from_db()
    assert (second.is_default, third.is_default) == (False, True)
    assert default_card(account) == third
    assert AutoTopUpSettings.objects.get(account=account).enabled


def test_removing_the_default_card_without_a_choice_makes_no_other_card_the_default(make_account):
    account = make_account()
    first = add_test_card(account=account, behaviour="succeed", now=NOW)
    declining = add_test_card(account=account, behaviour="decline", now=NOW)
    auto_topup_on(account)

    turned_off = remove_card(account=account, card_id=first.pk, now=NOW)

    declining.refresh_from_db()
    assert declining.is_default is False
    assert turned_off is True
    assert AutoTopUpSettings.objects.get(account=account).enabled is False


def test_removing_a_card_that_is_not_the_default_leaves_auto_top_up_on(make_account):
    account = make_account()
    first = add_test_card(account=account, behaviour="succeed", now=NOW)
    second = add_test_card(account=account, behaviour="decline", now=NOW)
    auto_topup_on(account)

    assert remove_card(account=account, card_id=second.pk, now=NOW) is False

    first.refresh_from_db()
    assert first.is_default
    assert AutoTopUpSettings.objects.get(account=account).enabled
