"""Refunds: credit-back and money back to the card for a top-up (SPEC P4)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied

from billing.models import EntryKind, LedgerEntry, Refund, RefundStatus, TopUpStatus
from billing.payments.refunds import (
    RefundError,
    refund_topup,
    refundable_micros,
    retry_pending_refunds,
)
from billing.payments.topups import fulfil_topup, start_topup
from tests.billing.postings import credit_back, post_entry
from tests.conftest import NOW

USD = 1_000_000
URLS = {"success_url": "https://x.test/ok/{TOPUP}/", "cancel_url": "https://x.test/no/{TOPUP}/"}


@pytest.fixture
def staff(make_user):
    user = make_user(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["refund_topup", "credit_back"])
    )
    return type(user).objects.get(pk=user.pk)  # fresh permission cache


def paid_topup(account, amount=25 * USD, *, payment_intent_id=None):
    topup = start_topup(account=account, amount_micros=amount, now=NOW, **URLS).topup
    return fulfil_topup(
        topup_id=topup.pk, now=NOW, payment_intent_id=payment_intent_id or f"test_pi_{topup.pk}"
    )


def test_credit_back_posts_one_refund_entry_per_key(make_account, staff):
    account = make_account()

    first = credit_back(
        account=account,
        amount_micros=3 * USD,
        reason="Outage",
        idempotency_key="k1",
        now=NOW,
        actor=staff,
    )
    again = credit_back(
        account=account,
        amount_micros=3 * USD,
        reason="Outage",
        idempotency_key="k1",
        now=NOW,
        actor=staff,
    )

    assert first.pk == again.pk
    assert (first.kind, first.actor, first.reason) == (EntryKind.REFUND, staff, "Outage")
    account.refresh_from_db()
    assert account.balance_micros == 3 * USD


def test_credit_back_needs_permission_and_reason(make_account, make_user):
    account = make_account()
    with pytest.raises(PermissionDenied):
        credit_back(
            account=account,
            amount_micros=USD,
            reason="x",
            idempotency_key="k",
            now=NOW,
            actor=make_user(),
        )
    with pytest.raises(RefundError, match="reason"):
        credit_back(account=account, amount_micros=USD, reason=" ", idempotency_key="k", now=NOW)


def test_partial_refund_takes_credit_from_the_topup_grant(make_account, staff):
    account = make_account()
    topup = paid_topup(account)

    refund = refund_topup(
        topup=topup, amount_micros=10 * USD, reason="Asked", request_key="r1", now=NOW, actor=staff
    )

    assert refund.status == RefundStatus.SUCCEEDED
    topup.refresh_from_db()
    assert topup.refunded_micros == 10 * USD
    assert topup.status == TopUpStatus.SUCCEEDED
    assert topup.grant.remaining_micros == 15 * USD
    entry = LedgerEntry.objects.get(kind=EntryKind.TOPUP_REFUND)
    assert (entry.amount_micros, entry.grant_id, entry.actor) == (-10 * USD, topup.grant_id, staff)
    account.refresh_from_db()
    assert account.balance_micros == 15 * USD

    refund_topup(
        topup=topup, amount_micros=15 * USD, reason="Rest", request_key="r2", now=NOW, actor=staff
    )
    topup.refresh_from_db()
    assert topup.status == TopUpStatus.REFUNDED


def test_spent_credit_cannot_be_refunded(make_account, staff):
    account = make_account()
    topup = paid_topup(account)
    post_entry(account=account, amount_micros=-20 * USD, kind=EntryKind.USAGE, now=NOW)
    topup.refresh_from_db()

    assert refundable_micros(topup) == 5 * USD
    with pytest.raises(RefundError, match=r"At most \$5\.00"):
        refund_topup(
            topup=topup, amount_micros=6 * USD, reason="x", request_key="r", now=NOW, actor=staff
        )
    assert not Refund.objects.exists()


def test_refund_needs_the_permission(make_account, make_user):
    topup = paid_topup(make_account())
    with pytest.raises(PermissionDenied):
        refund_topup(
            topup=topup, amount_micros=USD, reason="x", request_key="r", now=NOW, actor=make_user()
        )


def test_double_click_makes_one_stripe_refund(stripe_account, stripe_keys, fake_stripe, staff):
    account = stripe_account()
    topup = start_topup(account=account, amount_micros=25 * USD, now=NOW, **URLS).topup
    intent_id = "pi_TestRefundable0001"
    from tests.billing.payments import stripe_json

    fake_stripe.add(
        stripe_json.payment_intent(
            intent_id, amount_cents=2500, customer_id=account.stripe_customer_id, charge_id="ch_1"
        )
    )
    topup = fulfil_topup(topup_id=topup.pk, now=NOW, payment_intent_id=intent_id)

    first = refund_topup(
        topup=topup, amount_micros=5 * USD, reason="x", request_key="click", now=NOW, actor=staff
    )
    second = refund_topup(
        topup=topup, amount_micros=5 * USD, reason="x", request_key="click", now=NOW, actor=staff
    )

    assert first.pk == second.pk
    refunds = fake_stripe.posts("/v1/refunds")
    assert refunds == [
        {
            "payment_intent": intent_id,
            "amount": "500",
            "metadata[refund]": first.key,
            "metadata[topup]": topup.public_id,
        }
    ]
    assert next(r[3] for r in fake_stripe.requests if r[1] == "/v1/refunds") == first.key
    assert first.stripe_refund_id.startswith("re_")
    assert LedgerEntry.objects.filter(kind=EntryKind.TOPUP_REFUND).count() == 1


def test_a_refund_stripe_refuses_puts_the_credit_back(stripe_account, stripe_keys, staff):
    account = stripe_account()
    # The payment intent is unknown to Stripe: the refund is refused.
    topup = paid_topup(account, payment_intent_id="pi_UnknownToStripe0001")

    refund = refund_topup(
        topup=topup, amount_micros=5 * USD, reason="x", request_key="r", now=NOW, actor=staff
    )

    assert refund.status == RefundStatus.FAILED
    topup.refresh_from_db()
    assert topup.refunded_micros == 0
    account.refresh_from_db()
    assert account.balance_micros == 25 * USD
    kinds = list(LedgerEntry.objects.order_by("pk").values_list("kind", "amount_micros"))
    assert kinds[-2:] == [(EntryKind.TOPUP_REFUND, -5 * USD), (EntryKind.ADJUSTMENT, 5 * USD)]


def test_a_refund_whose_request_died_is_asked_again_with_the_same_key(
    stripe_account, stripe_keys, fake_stripe, staff, monkeypatch
):
    from billing.payments.gateway.protocol import ProviderUnavailable
    from billing.payments.gateway.stripe import StripeGateway
    from tests.billing.payments import stripe_json

    account = stripe_account()
    intent_id = "pi_TestRefundable0002"
    fake_stripe.add(
        stripe_json.payment_intent(
            intent_id, amount_cents=2500, customer_id=account.stripe_customer_id, charge_id="ch_2"
        )
    )
    topup = paid_topup(account, payment_intent_id=intent_id)

    def down(self, **kwargs):
        raise ProviderUnavailable("Stripe is down")

    with monkeypatch.context() as patched:
        patched.setattr(StripeGateway, "refund_payment", down)
        pending = refund_topup(
            topup=topup, amount_micros=5 * USD, reason="x", request_key="r", now=NOW, actor=staff
        )
    assert pending.status == RefundStatus.PENDING

    assert retry_pending_refunds(now=NOW + timedelta(minutes=1)) == 0  # not stale yet
    assert retry_pending_refunds(now=NOW + timedelta(minutes=10)) == 1

    pending.refresh_from_db()
    assert pending.status == RefundStatus.SUCCEEDED
    assert len(fake_stripe.posts("/v1/refunds")) == 1


def test_platform_call_refund_goes_through_credit_back(make_account, monkeypatch):
    """usage.ingest.calls.refund_call uses this module's credit-back: one REFUND entry per call."""
    import usage.ingest.calls
    from billing.payments import refunds
    from tests.usage.metering import call

    account = make_account("voice-prepaid", credit_micros=20 * USD)
    usage.ingest.calls.report_call(report=call(account, 83, call_id="c-refund"), now=NOW)
    seen = []

    def spy(**kwargs):
        seen.append(kwargs["idempotency_key"])
        return refunds.credit_back(**kwargs)

    monkeypatch.setattr(usage.ingest.calls, "credit_back", spy)
    usage.ingest.calls.refund_call(call_id="c-refund", now=NOW, reason="Platform fault")
    usage.ingest.calls.refund_call(call_id="c-refund", now=NOW, reason="Platform fault")

    assert len(seen) == 1 and seen[0].startswith("call-refund:")
    (entry,) = LedgerEntry.objects.filter(account=account, kind=EntryKind.REFUND)
    assert (entry.amount_micros, entry.reason) == (110_667, "Platform fault")
