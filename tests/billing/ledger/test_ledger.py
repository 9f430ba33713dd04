"""Posting to the credit ledger: grants, spending order, floors, debt, idempotency, expiry
(SPEC L1-L6)."""

from datetime import timedelta

import pytest

from billing.ledger.drift import ledger_drift
from billing.ledger.errors import DuplicatePosting, InsufficientCredit, LedgerError
from billing.ledger.expiry import expire_credit
from billing.ledger.posting import Posting
from billing.models import CreditGrant, EntryKind, LedgerEntry
from tests.billing.postings import post_entries, post_entry

USD = 1_000_000


def credit(account, usd, *, at, kind=EntryKind.TOPUP, **options):
    return post_entry(account=account, amount_micros=usd * USD, kind=kind, now=at, **options)


def debit(account, usd, *, at, kind=EntryKind.USAGE, **options):
    return post_entry(account=account, amount_micros=-usd * USD, kind=kind, now=at, **options)


def remaining_usd(*grants):
    """Return what is left of each grant, in USD, as stored in the database."""
    return [CreditGrant.objects.get(pk=grant.pk).remaining_micros / USD for grant in grants]


def ledger_state(account):
    account.refresh_from_db()
    return (
        account.balance_micros,
        list(LedgerEntry.objects.filter(account=account).values_list("pk", flat=True)),
        list(
            CreditGrant.objects.filter(account=account)
            .order_by("pk")
            .values_list("pk", "remaining_micros", "expired_at")
        ),
    )


# Credits -------------------------------------------------------------------------------------


def test_a_credit_creates_a_grant_and_an_entry_with_the_new_balance(make_ledger_account, now):
    account = make_ledger_account("prepaid")

    entry = credit(account, 25, at=now, description="Top-up by card")

    entry.refresh_from_db()
    assert entry.kind == EntryKind.TOPUP
    assert entry.amount_micros == 25 * USD
    assert entry.balance_after_micros == 25 * USD
    assert entry.description == "Top-up by card"
    assert entry.grant.kind == EntryKind.TOPUP
    assert entry.grant.amount_micros == entry.grant.remaining_micros == 25 * USD
    assert account.balance_micros == 25 * USD
    account.refresh_from_db()
    assert account.balance_micros == 25 * USD
    assert ledger_drift() == []


def test_a_credit_keeps_its_grant_expiry_and_priority(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    expires_at = now + timedelta(days=30)

    entry = credit(
        account,
        10,
        at=now,
        kind=EntryKind.PROMOTIONAL,
        grant_expires_at=expires_at,
        grant_priority=7,
    )

    grant = CreditGrant.objects.get(pk=entry.grant_id)
    assert (grant.kind, grant.expires_at, grant.priority) == (EntryKind.PROMOTIONAL, expires_at, 7)


def test_an_entry_links_to_its_cause_actor_and_reason(make_ledger_account, make_user, now):
    account = make_ledger_account("prepaid")
    staff = make_user(is_staff=True)
    cause = make_user()  # any saved model row can be a cause

    entry = credit(
        account,
        3,
        at=now,
        kind=EntryKind.ADJUSTMENT,
        cause=cause,
        actor=staff,
        reason="Goodwill after an outage",
    )

    entry.refresh_from_db()
    assert entry.cause == cause
    assert entry.cause_id == str(cause.pk)
    assert entry.actor == staff
    assert entry.reason == "Goodwill after an outage"


def test_a_zero_amount_is_refused(make_ledger_account, now):
    account = make_ledger_account("prepaid")

    with pytest.raises(LedgerError, match="move money"):
        post_entry(account=account, amount_micros=0, kind=EntryKind.ADJUSTMENT, now=now)

    assert LedgerEntry.objects.count() == 0


# Spending order (L5) -------------------------------------------------------------------------


def test_a_debit_spends_the_earliest_expiring_grant_first(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    never = credit(account, 10, at=now).grant
    late = credit(account, 10, at=now, grant_expires_at=now + timedelta(days=60)).grant
    soon = credit(account, 10, at=now, grant_expires_at=now + timedelta(days=7)).grant

    debit(account, 15, at=now + timedelta(hours=1))

    assert remaining_usd(soon, late, never) == [0, 5, 10]


def test_among_grants_expiring_together_the_highest_priority_is_spent_first(
    make_ledger_account, now
):
    account = make_ledger_account("prepaid")
    expires_at = now + timedelta(days=30)
    low = credit(account, 10, at=now, grant_expires_at=expires_at, grant_priority=0).grant
    high = credit(account, 10, at=now, grant_expires_at=expires_at, grant_priority=5).grant

    debit(account, 12, at=now)

    assert remaining_usd(high, low) == [0, 8]


def test_among_equal_grants_the_oldest_is_spent_first(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    older = credit(account, 10, at=now).grant
    newer = credit(account, 10, at=now + timedelta(minutes=1)).grant

    debit(account, 4, at=now + timedelta(minutes=2))

    assert remaining_usd(older, newer) == [6, 10]


def test_priority_wins_over_age_but_not_over_expiry(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    old_plain = credit(account, 10, at=now).grant
    new_priority = credit(account, 10, at=now, grant_priority=10).grant
    expiring_low = credit(
        account, 10, at=now, grant_expires_at=now + timedelta(days=1), grant_priority=-3
    ).grant

    debit(account, 25, at=now)

    assert remaining_usd(expiring_low, new_priority, old_plain) == [0, 0, 5]


def test_a_debit_spanning_several_grants_writes_one_entry(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 3, at=now)
    credit(account, 3, at=now)

    entry = debit(account, 5, at=now)

    assert entry.amount_micros == -5 * USD
    assert entry.balance_after_micros == 1 * USD
    assert LedgerEntry.objects.filter(kind=EntryKind.USAGE).count() == 1
    assert ledger_drift() == []


# Prepaid floor and postpaid debt (L6) --------------------------------------------------------


def test_a_prepaid_account_can_spend_its_balance_down_to_exactly_zero(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 5, at=now)

    entry = debit(account, 5, at=now)

    assert entry.balance_after_micros == 0
    assert account.balance_micros == 0
    assert ledger_drift() == []


def test_a_prepaid_debit_beyond_the_balance_raises_and_writes_nothing(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 5, at=now)
    before = ledger_state(account)

    with pytest.raises(InsufficientCredit):
        post_entry(account=account, amount_micros=-5 * USD - 1, kind=EntryKind.USAGE, now=now)

    assert ledger_state(account) == before
    assert account.balance_micros == 5 * USD


def test_a_prepaid_overdraft_is_allowed_only_when_the_caller_asks(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 5, at=now)

    entry = debit(account, 8, at=now, allow_overdraft=True)

    assert entry.balance_after_micros == -3 * USD
    assert CreditGrant.objects.get().remaining_micros == 0
    assert ledger_drift() == []


def test_a_postpaid_account_goes_negative_without_grants(make_ledger_account, now):
    account = make_ledger_account("postpaid")

    entry = debit(account, 30, at=now)

    assert entry.balance_after_micros == -30 * USD
    assert entry.grant is None
    assert CreditGrant.objects.filter(account=account).count() == 0
    assert ledger_drift() == []


def test_a_postpaid_debit_spends_credit_first_then_accrues_debt(make_ledger_account, now):
    account = make_ledger_account("postpaid")
    grant = credit(account, 10, at=now).grant

    entry = debit(account, 25, at=now)

    assert entry.balance_after_micros == -15 * USD
    assert remaining_usd(grant) == [0]
    assert ledger_drift() == []


def test_a_credit_repays_debt_before_it_becomes_spendable(make_ledger_account, now):
    account = make_ledger_account("postpaid")
    debit(account, 30, at=now)

    repayment = credit(account, 20, at=now, kind=EntryKind.INVOICE_PAYMENT)
    topup = credit(account, 50, at=now)

    assert repayment.balance_after_micros == -10 * USD
    assert repayment.grant is None  # all of it paid debt: nothing to spend
    assert topup.balance_after_micros == 40 * USD
    assert topup.amount_micros == 50 * USD
    assert topup.grant.amount_micros == topup.grant.remaining_micros == 40 * USD
    assert ledger_drift() == []


# Idempotency ---------------------------------------------------------------------------------


def test_a_reused_idempotency_key_raises_duplicate_posting_and_writes_nothing(
    make_ledger_account, now
):
    account = make_ledger_account("prepaid")
    first = credit(account, 20, at=now, idempotency_key="payment:pi_123")
    before = ledger_state(account)

    with pytest.raises(DuplicatePosting) as raised:
        credit(account, 20, at=now, idempotency_key="payment:pi_123")

    assert raised.value.entry == first
    assert ledger_state(account) == before
    assert account.balance_micros == 20 * USD


def test_a_reused_idempotency_key_on_a_debit_spends_nothing_twice(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 20, at=now)
    debit(account, 2, at=now, idempotency_key="call:c1")
    before = ledger_state(account)

    with pytest.raises(DuplicatePosting):
        debit(account, 2, at=now, idempotency_key="call:c1")

    assert ledger_state(account) == before
    assert account.balance_micros == 18 * USD


# Batches -------------------------------------------------------------------------------------


def test_a_batch_is_posted_with_one_running_balance(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 10, at=now)

    entries = post_entries(
        account=account,
        now=now,
        postings=[
            Posting(amount_micros=-2 * USD, kind=EntryKind.USAGE),
            Posting(amount_micros=-3 * USD, kind=EntryKind.USAGE),
        ],
    )

    assert [e.balance_after_micros for e in entries] == [8 * USD, 5 * USD]
    assert account.balance_micros == 5 * USD
    assert ledger_drift() == []


def test_a_batch_is_all_or_nothing(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 10, at=now)
    before = ledger_state(account)

    with pytest.raises(InsufficientCredit):
        post_entries(
            account=account,
            now=now,
            postings=[
                Posting(amount_micros=-6 * USD, kind=EntryKind.USAGE),
                Posting(amount_micros=-6 * USD, kind=EntryKind.USAGE),
            ],
        )

    assert ledger_state(account) == before


def test_a_debit_in_a_batch_can_spend_a_credit_posted_earlier_in_the_same_batch(
    make_ledger_account, now
):
    account = make_ledger_account("prepaid")

    post_entries(
        account=account,
        now=now,
        postings=[
            Posting(amount_micros=10 * USD, kind=EntryKind.TOPUP),
            Posting(amount_micros=-4 * USD, kind=EntryKind.USAGE),
        ],
    )

    assert account.balance_micros == 6 * USD
    assert CreditGrant.objects.get(account=account).remaining_micros == 6 * USD
    assert ledger_drift() == []


def test_a_batch_credit_joins_the_spending_order_of_existing_grants(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    plain = credit(account, 10, at=now).grant

    entries = post_entries(
        account=account,
        now=now + timedelta(minutes=1),
        postings=[
            Posting(amount_micros=-1 * USD, kind=EntryKind.USAGE),  # loads the grants first
            Posting(
                amount_micros=5 * USD,
                kind=EntryKind.PROMOTIONAL,
                grant_expires_at=now + timedelta(days=3),
            ),
            Posting(amount_micros=-7 * USD, kind=EntryKind.USAGE),
        ],
    )

    promotional = CreditGrant.objects.get(pk=entries[1].grant.pk)
    assert promotional.remaining_micros == 0  # expires first, so it is spent first
    assert remaining_usd(plain) == [7]
    assert ledger_drift() == []


# Debits from one grant (refunded top-ups) ------------------------------------------------------


def test_a_debit_from_a_grant_takes_only_from_that_grant(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    expiring = credit(account, 10, at=now, grant_expires_at=now + timedelta(days=5)).grant
    purchased = credit(account, 20, at=now).grant

    entry = debit(account, 15, at=now, kind=EntryKind.TOPUP_REFUND, from_grant=purchased)

    assert remaining_usd(expiring, purchased) == [10, 5]
    assert entry.grant == purchased
    assert entry.balance_after_micros == 15 * USD
    assert ledger_drift() == []


def test_a_debit_from_a_grant_cannot_take_more_than_is_left_of_it(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    purchased = credit(account, 20, at=now).grant
    credit(account, 50, at=now)
    debit(account, 15, at=now)  # spends the older purchase first
    before = ledger_state(account)

    with pytest.raises(InsufficientCredit, match="already been spent"):
        debit(account, 10, at=now, kind=EntryKind.TOPUP_REFUND, from_grant=purchased)

    assert ledger_state(account) == before


# Expiry (L5) ---------------------------------------------------------------------------------


def test_a_debit_after_expiry_first_writes_off_the_expired_grant(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    expires_at = now + timedelta(days=1)
    promotional = credit(
        account, 5, at=now, kind=EntryKind.PROMOTIONAL, grant_expires_at=expires_at
    ).grant
    purchased = credit(account, 10, at=now).grant
    later = expires_at + timedelta(hours=1)

    usage = debit(account, 3, at=later)

    expiry = LedgerEntry.objects.get(kind=EntryKind.EXPIRY)
    assert expiry.amount_micros == -5 * USD
    assert expiry.balance_after_micros == 10 * USD
    assert expiry.grant_id == promotional.pk
    assert expiry.created_at == later
    assert expiry.pk < usage.pk
    assert usage.balance_after_micros == 7 * USD
    assert remaining_usd(promotional, purchased) == [0, 7]
    assert CreditGrant.objects.get(pk=promotional.pk).expired_at == later
    assert ledger_drift() == []


def test_a_grant_is_spendable_until_the_instant_it_expires(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    expires_at = now + timedelta(days=1)
    grant = credit(account, 5, at=now, grant_expires_at=expires_at).grant

    debit(account, 2, at=expires_at - timedelta(microseconds=1))
    assert remaining_usd(grant) == [3]

    with pytest.raises(InsufficientCredit):
        debit(account, 1, at=expires_at)  # expiry is inclusive: at expires_at it is gone


def test_usage_never_spends_expired_credit_and_a_refused_debit_writes_no_expiry(
    make_ledger_account, now
):
    account = make_ledger_account("prepaid")
    credit(account, 5, at=now, grant_expires_at=now + timedelta(days=1))
    before = ledger_state(account)

    with pytest.raises(InsufficientCredit):
        debit(account, 1, at=now + timedelta(days=2))

    assert ledger_state(account) == before  # the write-off is rolled back with the debit


def test_a_postpaid_debit_after_expiry_accrues_debt_instead_of_spending_expired_credit(
    make_ledger_account, now
):
    account = make_ledger_account("postpaid")
    credit(account, 5, at=now, grant_expires_at=now + timedelta(days=1))

    usage = debit(account, 2, at=now + timedelta(days=2))

    assert usage.balance_after_micros == -2 * USD
    assert LedgerEntry.objects.get(kind=EntryKind.EXPIRY).amount_micros == -5 * USD
    assert ledger_drift() == []


def test_expire_credit_writes_off_due_grants_of_every_account(make_ledger_account, now):
    first = make_ledger_account("prepaid")
    second = make_ledger_account("postpaid")
    due_at = now + timedelta(days=1)
    credit(first, 5, at=now, grant_expires_at=due_at)
    credit(first, 7, at=now, grant_expires_at=now + timedelta(days=10))
    credit(second, 3, at=now, grant_expires_at=due_at)

    touched = expire_credit(now=due_at + timedelta(minutes=5))

    assert touched == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.balance_micros, second.balance_micros) == (7 * USD, 0)
    expiries = LedgerEntry.objects.filter(kind=EntryKind.EXPIRY).order_by("account_id")
    assert [e.amount_micros for e in expiries] == [-5 * USD, -3 * USD]
    assert ledger_drift() == []


def test_expire_credit_run_twice_writes_off_once(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 5, at=now, grant_expires_at=now + timedelta(days=1))
    run_at = now + timedelta(days=2)
    expire_credit(now=run_at)
    after_first_run = ledger_state(account)

    touched = expire_credit(now=run_at)
    touched_later = expire_credit(now=run_at + timedelta(days=30))

    assert (touched, touched_later) == (0, 0)
    assert ledger_state(account) == after_first_run
    assert LedgerEntry.objects.filter(kind=EntryKind.EXPIRY).count() == 1


def test_expire_credit_leaves_credit_that_has_not_expired(make_ledger_account, now):
    account = make_ledger_account("prepaid")
    credit(account, 5, at=now, grant_expires_at=now + timedelta(days=1))
    before = ledger_state(account)

    touched = expire_credit(now=now + timedelta(hours=23))

    assert touched == 0
    assert ledger_state(account) == before
