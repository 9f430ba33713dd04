"""JSON logs with the request id, the account and the key prefix, never the secret; the request
id in the API's error answers (issue 18, item 5)."""

import io
import json
import logging

import pytest

from operations.logs import JsonFormatter, RequestContextFilter
from tests.settings_probe import run_settings_probe


@pytest.fixture
def json_log():
    """Capture the request log lines as the LOG_FORMAT=json handler writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("meterline.requests")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_an_api_request_logs_one_json_line_with_its_id_account_and_key_prefix(
    client, json_log, make_account, make_key
):
    account = make_account("llm-api")
    key = make_key(account)

    response = client.get(
        "/api/v1/balance", HTTP_AUTHORIZATION=f"Bearer {key.token}", HTTP_X_REQUEST_ID="req-abc.1"
    )

    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-abc.1"
    (line,) = json_log()
    assert line["request_id"] == "req-abc.1"
    assert line["account"] == account.public_id
    assert line["key_prefix"] == key.api_key.key_id
    assert line["status"] == 200
    assert line["operation"] == "api-v1:balance"
    assert line["level"] == "INFO"
    secret = key.token.partition(":")[2]
    assert secret not in json.dumps(line)


def test_the_request_id_is_made_when_missing_or_not_an_id_and_is_in_api_errors(
    client, json_log, db
):
    response = client.get(
        "/api/v1/balance",
        HTTP_AUTHORIZATION="Bearer mlk_0000000000000000:wrong",
        HTTP_X_REQUEST_ID="two words\nand a newline",
    )

    assert response.status_code == 401
    made = response["X-Request-ID"]
    assert len(made) == 32 and made != "two words\nand a newline"
    error = response.json()["error"]
    assert error["request_id"] == made
    assert error["type"] == "authentication_error" and error["code"] == "401"
    (line,) = json_log()
    assert line["request_id"] == made
    assert "key_prefix" not in line  # the key was refused: it identifies no one


def test_a_dashboard_page_logs_the_account_of_its_url(client, json_log, make_account, make_user):
    user = make_user()
    account = make_account(owner=user)
    client.force_login(user)

    response = client.get(f"/app/a/{account.public_id}/usage/")

    assert response.status_code == 200
    (line,) = json_log()
    assert line["account"] == account.public_id
    assert line["operation"] == "usage:page"


def test_log_format_json_configures_one_json_object_per_line():
    probe = """
import django, logging
django.setup()
logging.getLogger("billing").warning("balance of %s is low", "acc_x", extra={"n": 3})
"""
    result = run_settings_probe(probe, LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "balance of acc_x is low"
    assert line["logger"] == "billing" and line["level"] == "WARNING" and line["n"] == 3


def test_an_unknown_log_format_is_refused():
    result = run_settings_probe("import django; django.setup()", LOG_FORMAT="xml")

    assert result.returncode != 0
    assert "LOG_FORMAT must be text or json" in result.stderr
