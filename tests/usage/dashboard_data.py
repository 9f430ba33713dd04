"""Usage for the dashboard tests, reported through the real services at chosen moments."""

import itertools
from datetime import datetime, timedelta

from accounts.models import Account
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events
from usage.models import Call
from usage.reports import CallReport, EventReport

_ids = itertools.count(1)


def report_call_at(
    account: Account, *, seconds: int, at: datetime, status: str = "completed", **fields
) -> Call:
    """Report a call of `seconds` that ended at `at`, as the platform would at that moment."""
    call, _ = report_call(
        report=CallReport(
            call_id=fields.pop("call_id", None) or f"dash-call-{next(_ids)}",
            account=account.public_id,
            status=status,
            connected_at=at - timedelta(seconds=seconds),
            ended_at=at,
            **fields,
        ),
        now=at,
    )
    return call


def report_llm_at(
    account: Account,
    *,
    at: datetime,
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    input_tokens: int = 1000,
    output_tokens: int = 500,
    **fields,
):
    return ingest_events(
        reports=[
            EventReport(
                id=fields.pop("id", None) or f"dash-llm-{next(_ids)}",
                account=account.public_id,
                type="llm",
                occurred_at=at,
                model=model,
                provider=provider,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                **fields,
            )
        ],
        now=at,
    )[0]
