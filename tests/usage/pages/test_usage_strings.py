"""Strings of the usage pages as people write them (issue 17): status names, not codes; "USD"
kept upper-case; singular and plural; large token counts in words and small ones with commas."""

from datetime import UTC, datetime

import pytest
import time_machine

from tests.conftest import NOW
from tests.usage.dashboard_data import report_call_at, report_llm_at
from usage.ingest.events import ingest_events
from usage.models import CallStatus
from usage.reports import EventReport

USD = 1_000_000
MARCH_1 = datetime(2026, 3, 1, tzinfo=UTC)
MARCH_4 = datetime(2026, 3, 4, 12, tzinfo=UTC)


def get(client, account, path="", **params):
    client.force_login(account.memberships.get().user)
    with time_machine.travel(NOW, tick=False):
        return client.get(f"/app/a/{account.public_id}/usage/{path}", params).content.decode()


@pytest.mark.parametrize("code", ["voice-prepaid", "voice-payg"])
def test_an_unanswered_call_is_explained_with_its_status_name(client, make_account, plans, code):
    account = make_account(code, credit_micros=50 * USD, at=MARCH_1, anchor_day=1)
    report_call_at(
        account, seconds=20, at=MARCH_4, status=CallStatus.HANGUP_ON_VOICEMAIL, llm="gpt-4o"
    )
    flat = plans[code].unanswered_flat_seconds

    page = get(client, account, "log/", kind="calls")

    calls = "Calls with status “Hung up on voicemail”"
    if flat:
        assert f"{calls} are billed a flat {flat} s" in page
    else:  # "billed a flat 0 s" said "free" the long way round
        assert f"{calls} are not billed on this plan" in page
    assert "hangup_on_voicemail calls" not in page.lower()


def test_a_token_price_rule_keeps_usd_upper_case(client, make_account):
    account = make_account("llm-api", credit_micros=20 * USD, at=MARCH_1, anchor_day=1)
    report_llm_at(account, at=MARCH_4, model="gpt-4o")

    page = get(client, account, "log/", kind="events")

    assert "USD per million tokens from the model catalog" in page
    assert "Usd per" not in page


@pytest.mark.parametrize(
    "messages, words",
    [
        (5, "1 billable minute, 0 messages carried over"),
        (11, "2 billable minutes, 1 message carried over"),
    ],
)
def test_chat_minutes_are_counted_in_singular_or_plural(client, make_account, messages, words):
    account = make_account("voice-payg", at=MARCH_1, anchor_day=1)
    ingest_events(
        reports=[
            EventReport(
                id="chat-1",
                account=account.public_id,
                type="chat",
                occurred_at=MARCH_4,
                messages=messages,
            )
        ],
        now=MARCH_4,
    )

    page = get(client, account, "log/", kind="events")

    assert words in page
    assert "minute(s)" not in page and "message(s)" not in page


def test_token_totals_read_in_words_above_a_million_and_with_commas_below(client, make_account):
    account = make_account("llm-api", credit_micros=20 * USD, at=MARCH_1, anchor_day=1)
    report_llm_at(account, at=MARCH_4, input_tokens=1_700_000, output_tokens=423_343)

    page = get(client, account, start="2026-03-01", end="2026-03-15")

    assert '<div class="value">1.7 million in</div>' in page
    assert '<div class="note">423,343 out</div>' in page
