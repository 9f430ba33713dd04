"""Fingerprints of what a report says, to tell a repeat from a contradiction (SPEC U3, U10).

A report of a final call, or an event, may be sent again: the same content is a repeat and is
answered as before; other content under the same id is refused (409). The fingerprint of the
first report is stored (`Call.final_hash`, `UsageEvent.content_hash`) and compared with the
fingerprint of every later one, possibly made by a later release, so each must stay byte for
byte what it was: tests/usage/test_fingerprints.py and tests/usage/test_event_hash.py pin them.
"""

import hashlib
import json
from json.encoder import encode_basestring_ascii as _json_text  # json.dumps's own

from usage.reports import CallReport, EventReport


def call_hash(report: CallReport) -> str:
    """Return the SHA-256 of what a final call report says."""
    fields = {
        "account": report.account,
        "status": report.status,
        "direction": report.direction,
        "connected_at": report.connected_at.isoformat() if report.connected_at else None,
        "ended_at": report.ended_at.isoformat() if report.ended_at else None,
        "transferred_at": report.transferred_at.isoformat() if report.transferred_at else None,
        "hold_seconds": str(report.hold_seconds.normalize()),
        "destination": report.destination,
        "llm": report.llm,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


# The JSON `event_hash` digests: json.dumps(fields, sort_keys=True) of these fields, keys in
# sorted order, so this text must stay byte for byte what json.dumps writes.
_HASHED_JSON = (
    '{"account": %s, "count": %s, "flex_price": %s, "input_tokens": %s, "messages": %s, '
    '"model": %s, "occurred_at": %s, "output_tokens": %s, "provider": %s, '
    '"standard_price": %s, "start_within": %s, "type": %s}'
)


def event_hash(report: EventReport) -> str:
    """Return the SHA-256 of an event's content.

    Filled in by hand rather than with json.dumps, which cost more than the rest of an
    event's validation (a dict, key sorting, an encoder per call).
    """
    text = _HASHED_JSON % (
        _json(report.account),
        _json(report.count),
        # Prices as numbers, not text: "0.153" and "0.1530" are the same report.
        _json(_number(report.flex_price)),
        _json(report.input_tokens),
        _json(report.messages),
        _json(report.model),
        _json(report.occurred_at.isoformat()),
        _json(report.output_tokens),
        _json(report.provider),
        _json(_number(report.standard_price)),
        _json(report.start_within),
        _json(report.type),
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _json(value) -> str:
    """Return `value` as json.dumps writes it (ASCII only, as by default)."""
    if value is None:
        return "null"
    if type(value) is str:
        return _json_text(value)
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value)  # anything else (a str enum member, a bool): as json.dumps does


def _number(value) -> str | None:
    return None if value is None else format(value.normalize(), "f")
