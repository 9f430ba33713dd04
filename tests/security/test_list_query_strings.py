"""Date ranges and cursors of the long lists come from the query string: whatever arrives, the
page answers (never a 500, also not halfway through a CSV download) and shows only what it should.
"""

from datetime import UTC, date, datetime

import pytest

from billing.db.keyset import day_bounds, parse_cursor

USD = 1_000_000
LISTS = ["usage/log/", "usage/log/export.csv", "billing/statement/", "billing/statement/export.csv"]


@pytest.fixture
def signed_in(client, make_user, make_account):
    user = make_user()
    account = make_account("voice-prepaid", owner=user, credit_micros=5 * USD)
    client.force_login(user)
    client.raise_request_exception = False

    def get(path, **params):
        response = client.get(f"/app/a/{account.public_id}/{path}", params)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return response.status_code, body.decode()

    return get


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "params",
    [
        {"end": "9999-12-31"},  # the day after it does not exist
        {"start": "0001-01-01", "end": "9999-12-31"},
        {"after": "0001-01-01T00:00:00+14:00_5"},  # before year 1 in UTC
        {"after": "2026-01-01T00:00:00+00:00_99999999999999999999999"},  # past 64 bits
        {"after": "2026-01-01T00:00:00_5"},  # no time zone: not one of our cursors
        {"after": "garbage"},
    ],
)
def test_edge_values_in_the_query_string_still_answer_the_page(signed_in, path, params):
    status, body = signed_in(path, **params)

    assert status == 200
    if path == "billing/statement/export.csv":
        assert "Initial credit" in body  # the whole range: the account's only entry


def test_a_range_to_the_last_date_has_no_upper_bound():
    assert day_bounds(date(2026, 3, 1), date.max) == (datetime(2026, 3, 1, tzinfo=UTC), None)
    assert day_bounds(None, date(2026, 3, 31)) == (None, datetime(2026, 4, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("cursor", "expected"),
    [
        ("2026-03-15T10:00:00+00:00_42", (datetime(2026, 3, 15, 10, tzinfo=UTC), 42)),
        ("2026-03-15T12:00:00+02:00_42", (datetime(2026, 3, 15, 10, tzinfo=UTC), 42)),
        ("0001-01-01T00:00:00+14:00_5", None),
        ("2026-03-15T10:00:00+00:00_0", None),
        ("2026-03-15T10:00:00+00:00_9223372036854775808", None),
        ("2026-03-15T10:00:00_5", None),
        ("", None),
    ],
)
def test_only_cursors_the_pages_make_are_read(cursor, expected):
    assert parse_cursor(cursor) == expected
