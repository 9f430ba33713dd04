"""`GET /api/v1/invoices` (SPEC 11, I1): a customer key lists its own account's invoices."""

import pytest

from billing.invoicing.period_close import close_periods
from tests.billing.invoice_data import threshold_invoice, two_statements

URL = "/api/v1/invoices"


def get(client, token, query=""):
    return client.get(f"{URL}{query}", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def postpaid(make_account):
    return make_account("voice-payg")


@pytest.fixture
def token(make_key, postpaid):
    return make_key(postpaid).token


def test_lists_the_accounts_invoices_newest_first_with_lines(client, postpaid, token):
    invoice = threshold_invoice(postpaid)
    close_periods(now=postpaid.subscription.current_period_end)
    period_invoice = postpaid.invoices.get(reason="period")

    response = get(client, token)

    assert response.status_code == 200
    body = response.json()
    assert [i["number"] for i in body["invoices"]] == [period_invoice.number, invoice.number]
    assert body["has_more"] is False
    listed = body["invoices"][1]
    assert listed["kind"] == "invoice"
    assert listed["reason"] == "threshold"
    assert listed["status"] == "open"
    assert listed["period_start"] == "2026-03-15T00:00:00Z"
    assert listed["period_end"] == "2026-03-15T12:05:00Z"
    assert listed["currency"] == "USD"
    # Money is a decimal string with six decimals, never a float.
    assert listed["subtotal"] == "225.152340"
    assert listed["total"] == "225.152340"
    assert listed["amount_due"] == "225.150000"
    assert listed["rounding"] == "-0.002340"
    assert listed["amount_paid"] == "0.000000"
    assert listed["opening_balance"] is None
    assert [
        (line["component"], line["quantity"], line["unit"], line["amount"])
        for line in listed["lines"]
    ] == [
        ("llm", 60, "second", "0.050000"),
        ("voice_engine", 60, "second", "0.090000"),
        ("input_tokens", 90_000_000, "token", "225.000000"),
        ("output_tokens", 1234, "token", "0.012340"),
    ]
    assert listed["lines"][2]["description"] == "Input tokens, gpt-4o"
    assert listed["lines"][2]["model"] == "gpt-4o"


def test_never_shows_another_accounts_invoices(client, make_account, make_key, postpaid, token):
    other = make_account("voice-payg")
    other_invoice = threshold_invoice(other)
    own_invoice = threshold_invoice(postpaid)

    own = get(client, token).json()["invoices"]
    theirs = get(client, make_key(other).token).json()["invoices"]

    assert [i["number"] for i in own] == [own_invoice.number]
    assert [i["number"] for i in theirs] == [other_invoice.number]
    assert get(client, token, f"?starting_after={other_invoice.number}").status_code == 400


def test_an_account_without_invoices_gets_an_empty_list(client, token):
    response = get(client, token)

    assert response.status_code == 200
    assert response.json() == {"invoices": [], "has_more": False}


def test_statements_carry_opening_and_closing_balances(client, make_account, make_key):
    account = make_account("voice-prepaid", credit_micros=50_000_000)
    first, second = two_statements(account)

    body = get(client, make_key(account).token).json()

    assert [i["number"] for i in body["invoices"]] == [second.number, first.number]
    statement = body["invoices"][0]
    assert statement["kind"] == "statement"
    assert statement["opening_balance"] == "49.889333"
    assert statement["closing_balance"] == "49.809333"
    assert statement["total"] == "0.080000"
    assert statement["amount_due"] == "0.000000"
    assert body["invoices"][1]["opening_balance"] == "0.000000"


def test_pages_with_limit_and_starting_after(client, make_account, make_key):
    account = make_account("voice-prepaid", credit_micros=50_000_000)
    first, second = two_statements(account)
    token = make_key(account).token

    page_one = get(client, token, "?limit=1").json()
    page_two = get(client, token, f"?limit=1&starting_after={second.number}").json()

    assert [i["number"] for i in page_one["invoices"]] == [second.number]
    assert page_one["has_more"] is True
    assert [i["number"] for i in page_two["invoices"]] == [first.number]
    assert page_two["has_more"] is False


@pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?limit=x", "?starting_after=nope"])
def test_bad_paging_is_a_400_in_the_error_shape(client, token, query):
    response = get(client, token, query)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "400"


def test_needs_a_customer_key(client, make_key):
    missing = client.get(URL)
    platform = get(client, make_key().token)

    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert platform.status_code == 403
    assert platform.json()["error"]["type"] == "permission_error"


def test_answers_carry_the_rate_limit_headers(client, token):
    response = get(client, token)

    assert response.status_code == 200
    assert "x-ratelimit-limit-requests" in response
    assert "x-ratelimit-remaining-requests" in response


def test_is_documented_in_the_openapi_schema(client):
    schema = client.get("/api/v1/openapi.json").json()

    operation = schema["paths"]["/api/v1/invoices"]["get"]
    assert {"200", "400", "401", "403", "429"} <= set(operation["responses"])
