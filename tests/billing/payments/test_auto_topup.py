"""Auto-top-up: one charge per crossing, back-off, authentication, cap, plans (SPEC P2)."""

from datetime import timedelta

import pytest
import time_machine
from django.test import TestCase

from billing.models import (
    AutoTopUpSettings,
    EntryKind,
    LedgerEntry,
    Notification,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.payments.auto_topup import AutoTopUpError, retry_auto_topups, save_auto_topup_settings
from billing.payments.cards import add_test_card
from billing.payments.off_session import queue_charge
from billing.payments.simulated import complete_test_topup
from tests.billing.payments import stripe_json
from tests.billing.postings import post_entry
from tests.conftest import NOW

USD = 1_000_000


def spend(account, micros, *, at=NOW):
    """Deduct usage at `at` and run what it queued after commit, with the clock at `at`."""
    with time_machine.travel(at, tick=False), TestCase.captureOnCommitCallbacks(execute=True):
        post_entry(account=account, amount_micros=-micros, kind=EntryKind.USAGE, now=at)
    account.refresh_from_db()


@pytest.fixture
def auto_account(make_account, django_capture_on_commit_callbacks):
    """voice-prepaid with 30 USD, a test card, auto-top-up of 20 USD below 10 USD."""

    def make(behaviour="succeed", *, credit=30 * USD, **settings):
        account = make_account("voice-prepaid", credit_micros=credit)
        with django_capture_on_commit_callbacks(execute=True):
            add_test_card(account=account, behaviour=behaviour, now=NOW)
        save_auto_topup_settings(
            account=account,
            enabled=True,
            threshold_micros=settings.pop("threshold_micros", 10 * USD),
            amount_micros=settings.pop(
                "amount_micros", None if "target_micros" in settings else 20 * USD
            ),
            now=NOW,
            **settings,
        )
        return account

    return make


def auto_topups(account):
    return list(TopUp.objects.filter(account=account, kind=TopUpKind.AUTO).order_by("pk"))


def test_llm_api_plan_refuses_auto_topup(make_account):
    account = make_account("llm-api")

    with pytest.raises(AutoTopUpError, match="not available on the LLM API"):
        save_auto_topup_settings(
            account=account, enabled=True, threshold_micros=5 * USD, amount_micros=10 * USD, now=NOW
        )
    assert not AutoTopUpSettings.objects.exists()


def test_auto_topup_needs_a_card_and_the_minimum(make_account):
    account = make_account()
    with pytest.raises(AutoTopUpError, match="Add a card first"):
        save_auto_topup_settings(
            account=account,
            enabled=True,
            threshold_micros=10 * USD,
            amount_micros=20 * USD,
            now=NOW,
        )
    add_test_card(account=account, behaviour="succeed", now=NOW)
    with pytest.raises(AutoTopUpError, match=r"at least the minimum top-up, \$20\.00"):
        save_auto_topup_settings(
            account=account, enabled=True, threshold_micros=10 * USD, amount_micros=5 * USD, now=NOW
        )


def test_deduction_below_threshold_charges_once_and_credits(
    auto_account, django_capture_on_commit_callbacks
):
    account = auto_account()

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)  # 30 -> 5, below 10

    (topup,) = auto_topups(account)
    assert topup.status == TopUpStatus.SUCCEEDED
    assert topup.key == f"auto-topup:{account.public_id}:1:1"
    account.refresh_from_db()
    assert account.balance_micros == 25 * USD
    assert LedgerEntry.objects.get(idempotency_key=f"topup:{topup.pk}").kind == EntryKind.AUTO_TOPUP
    assert Notification.objects.filter(kind="auto_topup_succeeded").count() == 1


def test_one_charge_per_crossing_then_rearmed_by_the_rising_balance(
    auto_account, django_capture_on_commit_callbacks
):
    account = auto_account()
    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)  # crossing 1: 5 + 20 = 25
        spend(account, 1 * USD)  # 24: above the threshold, nothing
        spend(account, 20 * USD)  # 4: crossing 2
        spend(account, 1 * USD)  # 23

    assert [t.key.rsplit(":", 2)[1:] for t in auto_topups(account)] == [["1", "1"], ["2", "1"]]
    account.refresh_from_db()
    assert account.balance_micros == 23 * USD


def test_no_second_charge_while_one_is_pending(auto_account, django_capture_on_commit_callbacks):
    account = auto_account()

    with django_capture_on_commit_callbacks(execute=False) as queued:
        for micros in (25 * USD, 1 * USD, 1 * USD):
            post_entry(account=account, amount_micros=-micros, kind=EntryKind.USAGE, now=NOW)

    assert [c.func for c in queued if getattr(c, "func", None) is queue_charge] == [queue_charge]
    (topup,) = auto_topups(account)
    assert topup.status == TopUpStatus.PENDING


def test_decline_backs_off_then_retries_with_a_new_attempt(
    auto_account, django_capture_on_commit_callbacks
):
    account = auto_account("decline")

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)
        spend(account, 1 * USD, at=NOW + timedelta(minutes=30))  # inside the back-off
    (declined,) = auto_topups(account)
    assert declined.status == TopUpStatus.FAILED
    row = AutoTopUpSettings.objects.get(account=account)
    assert row.next_attempt_at == NOW + timedelta(hours=1)
    failed = Notification.objects.get(kind="auto_topup_failed")
    assert failed.context["error"] == "Your card was declined."

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 1 * USD, at=NOW + timedelta(hours=2))
    _, second = auto_topups(account)
    assert second.key == f"auto-topup:{account.public_id}:1:2"
    assert AutoTopUpSettings.objects.get(account=account).next_attempt_at == NOW + timedelta(
        hours=2 + 6
    )


def test_retry_job_tries_again_after_the_back_off(auto_account, django_capture_on_commit_callbacks):
    account = auto_account("decline")
    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)

    assert retry_auto_topups(now=NOW + timedelta(minutes=10)) == 0
    later = NOW + timedelta(hours=1)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert retry_auto_topups(now=later) == 1

    assert len(auto_topups(account)) == 2


def test_card_needing_authentication_emails_a_link_and_never_retries(
    auto_account, django_capture_on_commit_callbacks
):
    account = auto_account("require_action")

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)
        spend(account, 1 * USD, at=NOW + timedelta(days=2))
    assert retry_auto_topups(now=NOW + timedelta(days=3)) == 0

    (topup,) = auto_topups(account)
    assert topup.status == TopUpStatus.REQUIRES_ACTION
    notice = Notification.objects.get(kind="auto_topup_action_required")
    assert notice.context["action_url"].endswith(
        f"/app/a/{account.public_id}/payments/topup/{topup.public_id}/complete/"
    )

    # The customer follows the link and pays on-session: the same fulfilment credits it.
    complete_test_topup(account=account, topup_public_id=topup.public_id, pay=True, now=NOW)
    account.refresh_from_db()
    assert account.balance_micros == 4 * USD + 20 * USD


def test_monthly_cap_stops_further_charges(auto_account, django_capture_on_commit_callbacks):
    account = auto_account(monthly_cap_micros=30 * USD)

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)  # charge 1: 20 of 30
        spend(account, 20 * USD)  # charge 2 would make 40 > 30

    assert len(auto_topups(account)) == 1
    cap = Notification.objects.get(kind="auto_topup_failed")
    assert cap.context["reason"] == "monthly_cap"

    with django_capture_on_commit_callbacks(execute=True):
        post_entry(account=account, amount_micros=20 * USD, kind=EntryKind.TOPUP, now=NOW)
        spend(account, 25 * USD, at=NOW.replace(month=4, day=2))  # a new month
    assert len(auto_topups(account)) == 2


def test_target_mode_tops_up_to_the_target_in_whole_cents(
    auto_account, django_capture_on_commit_callbacks
):
    account = auto_account(target_micros=50 * USD)

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25_876_544)  # 30 -> 4.123456

    (topup,) = auto_topups(account)
    assert topup.amount_micros == 45_880_000  # 45.876544 rounded up to the cent


def test_postpaid_accounts_never_auto_top_up(make_account, django_capture_on_commit_callbacks):
    account = make_account("voice-payg")
    AutoTopUpSettings.objects.create(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD
    )
    with django_capture_on_commit_callbacks(execute=True):
        post_entry(account=account, amount_micros=-30 * USD, kind=EntryKind.USAGE, now=NOW)

    assert not auto_topups(account)


# With Stripe keys, through the gateway module -------------------------------------------------


def test_stripe_charge_is_off_session_with_the_topup_key(
    stripe_account, stripe_keys, fake_stripe, post_event, django_capture_on_commit_callbacks
):
    account = stripe_account(credit_micros=30 * USD)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD, now=NOW
    )

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)

    (topup,) = auto_topups(account)
    (_, _, params, key) = next(r for r in fake_stripe.requests if r[1] == "/v1/payment_intents")
    assert key == topup.key
    assert (params["amount"], params["currency"]) == ("2000", "usd")
    assert (params["off_session"], params["confirm"]) == ("true", "true")
    assert params["metadata[topup]"] == topup.public_id
    assert topup.status == TopUpStatus.SUCCEEDED

    # Stripe's webhook for the same payment arrives afterwards: nothing more is credited.
    intent = fake_stripe.objects[topup.payment_intent_id]
    post_event(stripe_json.event("payment_intent.succeeded", intent))
    assert LedgerEntry.objects.filter(kind=EntryKind.AUTO_TOPUP).count() == 1


@pytest.mark.parametrize(
    ("answer", "status", "notice"),
    [
        ("decline", TopUpStatus.FAILED, "auto_topup_failed"),
        ("authenticate", TopUpStatus.REQUIRES_ACTION, "auto_topup_action_required"),
    ],
)
def test_stripe_decline_and_authentication_required(
    answer, status, notice, stripe_account, stripe_keys, django_capture_on_commit_callbacks
):
    account = stripe_account(card_answer=answer, credit_micros=30 * USD)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD, now=NOW
    )

    with django_capture_on_commit_callbacks(execute=True):
        spend(account, 25 * USD)

    (topup,) = auto_topups(account)
    assert topup.status == status
    assert topup.payment_intent_id.startswith("pi_")
    assert Notification.objects.filter(kind=notice).count() == 1
    assert not LedgerEntry.objects.filter(kind=EntryKind.AUTO_TOPUP).exists()
