"""Money refunds of a top-up to the card by staff (SPEC P4)."""

import pytest

from billing import staff
from billing.models import EntryKind, Refund, RefundStatus, StaffAction, TopUpStatus
from billing.payments.refunds import refundable_micros
from billing.staff import StaffActionError
from tests.billing.staff.scenery import topup_of
from tests.billing.staff_data import USD, balance, everything_written, new_key
from tests.conftest import NOW
from tests.usage.metering import call, entries
from usage.ingest.calls import report_call


def test_a_partial_money_refund_goes_to_the_card_and_takes_the_credit_back(finance, prepaid):
    topup = topup_of(prepaid)

    outcome = staff.refund_topup(
        topup=topup,
        amount_micros=20 * USD,
        reason="Bought too much",
        actor=finance,
        key=new_key(),
        now=NOW,
    )

    [refund] = Refund.objects.filter(topup=topup)
    assert (refund.status, refund.amount_micros, refund.actor) == (
        RefundStatus.SUCCEEDED,
        20 * USD,
        finance,
    )
    assert refund.stripe_refund_id  # the test-mode gateway's reference
    [entry] = entries(prepaid, EntryKind.TOPUP_REFUND)
    assert (entry.amount_micros, entry.cause_id) == (-20 * USD, str(refund.pk))
    assert balance(prepaid) == 30 * USD
    topup.refresh_from_db()
    assert (topup.refunded_micros, topup.status) == (20 * USD, TopUpStatus.SUCCEEDED)
    record = outcome.record
    assert (record.actor, record.action, record.account, record.reason) == (
        finance,
        StaffAction.REFUND_TOPUP,
        prepaid,
        "Bought too much",
    )
    assert record.before == {"balance_micros": 50 * USD}
    assert record.after == {
        "balance_micros": 30 * USD,
        "amount_micros": 20 * USD,
        "refund_status": "succeeded",
    }
    assert record.target_id == str(refund.pk)
    # One sentence, not "Refund of $20.00: Refunded." (issue 17).
    assert outcome.message == "$20.00 refunded to the card."


def test_a_money_refund_never_exceeds_what_is_unrefunded_and_unspent(finance, prepaid):
    report_call(report=call(prepaid, 600), now=NOW)  # 10 minutes at 0.08: 0.80 USD spent
    topup = topup_of(prepaid)
    assert refundable_micros(topup) == 49_200_000
    kwargs = {"topup": topup, "reason": "Leaving", "actor": finance, "now": NOW}
    before = everything_written()

    with pytest.raises(StaffActionError, match=r"\$49\.20"):
        staff.refund_topup(amount_micros=49_210_000, key=new_key(), **kwargs)
    assert everything_written() == before

    staff.refund_topup(amount_micros=40 * USD, key=new_key(), **kwargs)
    with pytest.raises(StaffActionError, match=r"\$9\.20"):
        staff.refund_topup(amount_micros=9_210_000, key=new_key(), **kwargs)
    staff.refund_topup(amount_micros=9_200_000, key=new_key(), **kwargs)

    assert balance(prepaid) == 0
    assert topup_of(prepaid).refunded_micros == 49_200_000
    assert Refund.objects.filter(status=RefundStatus.SUCCEEDED).count() == 2
