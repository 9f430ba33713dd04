"""docs/integration.md stays true: each of its curl examples is sent to the API, in order, and
answers the status its `# → NNN` line says."""

import json
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import time_machine

from accounts.models import Account
from billing.ledger.drift import ledger_drift

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
    assert "<!-- WEBHOOKS" in DOC.read_text()


def test_every_curl_example_of_the_integration_doc_answers_as_it_says(client, plans, make_key):
    platform = make_key()
    env = {"METERLINE": BASE, "PLATFORM_KEY": platform.token}
    answers = []

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
            answers.append(json.loads(response.content))

    voice = Account.objects.get(external_id="ws_42")
    llm = Account.objects.get(external_id="org_7")
    # The call was charged and the credit granted; the LLM requests were charged.
    assert voice.balance_micros < 35_000_000 and llm.balance_micros < 5_000_000
    assert [r["status"] for r in answers[-4]["results"]] == ["accepted", "accepted"]
    assert answers[-2]["pending_plan"] == "flex-router"
    assert ledger_drift() == []
