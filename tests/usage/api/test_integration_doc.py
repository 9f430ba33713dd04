"""docs/integration.md stays true: each of its curl examples is sent to the API, in order, and
answers the status its `# → NNN` line says; its webhook receiver accepts a genuine delivery once
and refuses a forged one."""

import base64
import json
import os
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import time_machine
from standardwebhooks import Webhook

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from webhooks.models import WebhookEndpoint

DOC = Path(__file__).resolve().parents[3] / "docs" / "integration.md"
# The moment the doc's reports are sent at: its call ended 29 minutes before.
DOC_NOW = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
BASE = "https://billing.example.com"


def curl_examples(text: str) -> list[tuple[int, list[str]]]:
    """Return each bash block's expected status and its curl command as words."""
    examples = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        expected = re.search(r"^# → (\d{3})$", block, re.M)
        command = re.sub(r"\\\n\s*", " ", re.sub(r"^#.*\n", "", block, flags=re.M)).strip()
        assert expected and command.startswith("curl "), block
        examples.append((int(expected.group(1)), shlex.split(command)))
    return examples


def request_of(words: list[str], env: dict[str, str]) -> dict:
    """Turn curl's words into the method, path, headers and body of a test client request."""
    method, url, headers, body = "GET", "", {}, None
    words = iter(words[1:])
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(": ")
            headers[name] = value
        elif word == "-d":
            body = next(words)
            method = method if method != "GET" else "POST"
        else:
            url = word
    for name, value in env.items():
        url = url.replace(f"${name}", value)
        headers = {k: v.replace(f"${name}", value) for k, v in headers.items()}
    return {"method": method, "url": url, "headers": headers, "body": body}


def test_the_doc_has_the_steps_of_both_integrations():
    examples = curl_examples(DOC.read_text())

    assert len(examples) >= 12
    assert any("/api/v1/webhook_endpoints" in " ".join(words) for _, words in examples)


def test_every_curl_example_of_the_integration_doc_answers_as_it_says(client, plans, make_key):
    platform = make_key()
    env = {"METERLINE": BASE, "PLATFORM_KEY": platform.token}
    answers = {}

    with time_machine.travel(DOC_NOW, tick=False):
        for expected, words in curl_examples(DOC.read_text()):
            request = request_of(words, env)
            assert request["url"].startswith(BASE), words
            path = request["url"][len(BASE) :]
            extra = {
                "HTTP_" + name.upper().replace("-", "_"): value
                for name, value in request["headers"].items()
                if name != "Content-Type"
            }
            response = client.generic(
                request["method"],
                path,
                request["body"] or "",
                content_type=request["headers"].get("Content-Type", ""),
                **extra,
            )
            assert response.status_code == expected, (words, response.content)
            answers[request["method"], path] = json.loads(response.content)

    voice = Account.objects.get(external_id="ws_42")
    llm = Account.objects.get(external_id="org_7")
    # The call was charged and the credit granted; the LLM requests were charged.
    assert voice.balance_micros < 35_000_000 and llm.balance_micros < 5_000_000
    events = answers["POST", "/api/v1/events"]["results"]
    assert [r["status"] for r in events] == ["accepted", "accepted"]
    assert answers["PATCH", "/api/v1/customers/org_7"]["pending_plan"] == "flex-router"
    assert ledger_drift() == []
    # The endpoint the doc creates is the one its listing shows, and gets the doc's events.
    created = answers["POST", "/api/v1/webhook_endpoints"]
    [listed] = answers["GET", "/api/v1/webhook_endpoints"]["webhook_endpoints"]
    assert created["secret"].startswith("whsec_") and listed["id"] == created["id"]
    endpoint = WebhookEndpoint.objects.get(public_id=created["id"])
    assert "balance.low" in endpoint.event_types


def python_example(text: str) -> str:
    """The doc's Python block: its webhook receiver."""
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    return code


def test_the_python_receiver_of_the_doc_handles_a_genuine_event_once_and_refuses_a_forgery(
    monkeypatch,
):
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    monkeypatch.setenv("METERLINE_WEBHOOK_SECRET", secret)
    seen, handled = set(), []

    def first_time(event_id: str) -> bool:
        new = event_id not in seen
        seen.add(event_id)
        return new

    receiver = {"first_time": first_time, "handle": handled.append}
    exec(python_example(DOC.read_text()), receiver)  # noqa: S102 - the doc's own example
    body = json.dumps({"id": "evt_1", "type": "balance.low", "data": {"customer": "ws_42"}})
    sent_at = datetime.now(UTC)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign("evt_1", sent_at, body),
    }

    assert receiver["receive"](body.encode(), headers) == 200
    assert receiver["receive"](body.encode(), headers) == 200  # a retry: not handled again
    forged = body.replace("ws_42", "ws_43").encode()
    assert receiver["receive"](forged, headers) == 400
    assert [event["data"]["customer"] for event in handled] == ["ws_42"]
