"""An event's content hash is the same as it always was (SPEC U10).

Stored hashes are compared with the hashes of new reports: a repeat of an event stored before a
change of `event_hash` must still be a duplicate, not a 409. So the hash is pinned to the
original definition, json.dumps(fields, sort_keys=True), over awkward content too.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from usage.ingest.fingerprints import event_hash
from usage.models import EventType
from usage.reports import EventReport


def original_event_hash(report: EventReport) -> str:
    """The first definition of the hash, which every stored `content_hash` was made with."""

    def number(value):
        return None if value is None else format(value.normalize(), "f")

    fields = {
        "account": report.account,
        "type": report.type,
        "occurred_at": report.occurred_at.isoformat(),
        "messages": report.messages,
        "count": report.count,
        "model": report.model,
        "provider": report.provider,
        "input_tokens": report.input_tokens,
        "output_tokens": report.output_tokens,
        "start_within": report.start_within,
        "standard_price": number(report.standard_price),
        "flex_price": number(report.flex_price),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def test_a_stored_hash_of_an_llm_event_is_unchanged():
    report = EventReport(
        id="ev-1",
        account="acc_1",
        type="llm",
        occurred_at=datetime(2026, 3, 15, 12, 0, tzinfo=UTC),
        model="gpt-4o",
        provider="openai",
        input_tokens=1000,
        output_tokens=500,
    )

    # The hexdigest the first definition stored for this report.
    assert event_hash(report) == (
        "090e03e73884aba857622262fa0275cb814489959db79fc2b3e1c1a0df057bbc"
    )
    assert original_event_hash(report) == event_hash(report)


def test_a_str_enum_type_hashes_as_its_value():
    moment = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    as_text = EventReport(id="e", account="a", type="chat", occurred_at=moment, messages=3)
    as_member = EventReport(
        id="e", account="a", type=EventType.CHAT, occurred_at=moment, messages=3
    )

    assert event_hash(as_member) == event_hash(as_text) == original_event_hash(as_member)


texts = st.text(max_size=40)  # any code point: quotes, backslashes, controls, non-ASCII, emoji
quantities = st.none() | st.integers(min_value=-(10**13), max_value=10**13) | st.booleans()
prices = st.none() | st.decimals(
    min_value=0, max_value=10**9, places=12, allow_nan=False, allow_infinity=False
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda m: m.replace(tzinfo=timezone(timedelta(hours=5, minutes=30)))
)


@settings(max_examples=500, deadline=None)
@given(
    account=texts,
    type_=st.sampled_from([*EventType.values, *EventType]) | texts,
    occurred_at=moments,
    messages=quantities,
    count=quantities,
    model=texts,
    provider=texts,
    input_tokens=quantities,
    output_tokens=quantities,
    start_within=texts,
    standard_price=prices,
    flex_price=prices,
)
def test_the_hash_is_the_original_one_for_any_content(
    account,
    type_,
    occurred_at,
    messages,
    count,
    model,
    provider,
    input_tokens,
    output_tokens,
    start_within,
    standard_price,
    flex_price,
):
    report = EventReport(
        id="ev",
        account=account,
        type=type_,
        occurred_at=occurred_at,
        messages=messages,
        count=count,
        model=model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        start_within=start_within,
        standard_price=standard_price,
        flex_price=flex_price,
    )

    assert event_hash(report) == original_event_hash(report)


def test_prices_written_with_trailing_zeros_hash_the_same():
    moment = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    short = EventReport(
        id="e", account="a", type="llm", occurred_at=moment, standard_price=Decimal("0.153")
    )
    long = EventReport(
        id="e", account="a", type="llm", occurred_at=moment, standard_price=Decimal("0.1530")
    )

    assert event_hash(short) == event_hash(long)
