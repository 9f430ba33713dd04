"""Credit past its expiry is never spendable, even before the hourly job writes it off
(issue 14 item 2; SPEC L5, G1). The first authorization or charge that finds it writes it off."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing.invoicing.period_close import close_periods
from billing.models import CreditGrant, EntryKind
from tests.billing.postings import post_entry
from tests.conftest import NOW
from tests.usage.metering import (
    USD,
    balance,
    call,
    entries,
    no_ledger_drift,  # noqa: F401 - autouse: every test ends with the ledger checked
    tokens,
)
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events
from usage.reads.keys import load_key
from usage.reports import PaymentRequired
from usage.spending.authorize import authorize

# Accounts open on NOW (2026-03-15): the first period ends on 2026-04-15.
FIRST_END = datetime(2026, 4, 15, tzinfo=UTC)


def ask(key, feature, *, now=NOW, call_id=""):
    return authorize(
        key=load_key(key.key_id),
        feature=feature,
        model="gpt-4o" if feature == "llm" else "",
        provider="",
        start_within="",
        call_id=call_id,
        now=now,
    )


def grant_expired_credit(account, amount_micros=10 * USD):
    """Promotional credit granted two days ago that expired ten minutes ago, not written off."""
    post_entry(
        account=account,
        amount_micros=amount_micros,
        kind=EntryKind.PROMOTIONAL,
        now=NOW - timedelta(days=2),
        grant_expires_at=NOW - timedelta(minutes=10),
    )


@pytest.mark.parametrize(("plan", "feature"), [("voice-prepaid", "call"), ("llm-api", "llm")])
def test_credit_past_its_expiry_is_not_authorized_and_the_authorization_writes_it_off(
    make_account, make_key, plan, feature
):
    account = make_account(plan)
    # llm-api's signup credit: spend it on NOW - 1 day, so only the expired grant is left.
    if account.balance_micros:
        ingest_events(
            reports=[
                tokens(
                    account,
                    input_tokens=0,
                    output_tokens=1_000_000,
                    occurred_at=NOW - timedelta(days=1),
                )
            ],
            now=NOW - timedelta(days=1),
        )
    assert balance(account) == 0
    grant_expired_credit(account)
    key = make_key(account).api_key

    with pytest.raises(PaymentRequired):
        ask(key, feature, call_id="c-expired")

    [expiry] = entries(account, EntryKind.EXPIRY)
    assert expiry.amount_micros == -10 * USD
    assert balance(account) == 0
    assert not CreditGrant.objects.filter(account=account, remaining_micros__gt=0).exists()


def test_an_authorized_call_is_promised_only_what_the_unexpired_credit_pays(make_account, make_key):
    # voice-prepaid, 0.08 USD/min: 2 USD of valid credit pays 1,500 s; the 10 USD that expired
    # would have paid 7,500 s more.
    account = make_account("voice-prepaid", credit_micros=2 * USD)
    grant_expired_credit(account)
    key = make_key(account).api_key

    answer = ask(key, "call", call_id="c-1")

    assert answer.max_seconds == 1_500
    assert answer.balance_micros == 2 * USD
    assert balance(account) == 2 * USD
    assert len(entries(account, EntryKind.EXPIRY)) == 1


def test_a_charge_that_finds_only_expired_credit_writes_it_off_and_collects_nothing_from_it(
    make_account,
):
    account = make_account("voice-prepaid")
    grant_expired_credit(account)

    first, _ = report_call(report=call(account, 60), now=NOW)
    second, _ = report_call(report=call(account, 60), now=NOW + timedelta(minutes=1))

    assert (first.charged_micros, first.uncollected_micros) == (0, 80_000)
    assert (second.charged_micros, second.uncollected_micros) == (0, 80_000)
    [expiry] = entries(account, EntryKind.EXPIRY)
    assert expiry.amount_micros == -10 * USD
    assert balance(account) == 0


def test_the_balance_endpoint_leaves_out_credit_past_its_expiry(client, make_account, make_key):
    account = make_account("voice-prepaid", credit_micros=2 * USD)
    grant_expired_credit(account)
    key = make_key(account)

    with time_machine.travel(NOW, tick=False):
        response = client.get("/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {key.token}")

    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert (body["balance"], body["available"]) == ("2.000000", "2.000000")


def test_included_credit_gives_nothing_away_between_period_end_and_the_close(
    plans_without_fees, make_account, make_key
):
    # credits-monthly: 50 USD of included credit expiring with the period, 0.10 USD/min.
    account = make_account("credits-monthly")
    key = make_key(account).api_key
    gap = FIRST_END + timedelta(minutes=20)  # the period has ended; the hourly close has not run

    with pytest.raises(PaymentRequired):
        ask(key, "call", now=gap, call_id="c-gap")
    charged, _ = report_call(
        report=call(account, 600, connected_at=gap - timedelta(minutes=15)), now=gap
    )

    assert charged.charged_micros == 0
    assert [e.amount_micros for e in entries(account, EntryKind.EXPIRY)] == [-50 * USD]
    close_periods(now=FIRST_END + timedelta(hours=1))
    # The close grants the new period's credit and writes nothing off a second time.
    assert balance(account) == 50 * USD
    assert len(entries(account, EntryKind.EXPIRY)) == 1
