"""JSON answers that several API modules give: the response itself, a call, an authorization.

Built by hand rather than through the response schemas: the hot path skips re-validating its
own output (usage.api.app).
"""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse

from billing.money import micros_to_api
from usage.models import Call
from usage.reports import Authorization


def json_response(data, status: int = 200) -> HttpResponse:
    return HttpResponse(
        json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def call_json(call: Call, *, account: str, customer: str | None) -> dict:
    """The call, naming its account by both ids: Meterline's and the operator's (or null)."""
    return {
        "call_id": call.call_id,
        "account": account,
        "customer": customer,
        "status": call.status,
        "direction": call.direction,
        "billable_seconds": call.billable_seconds,
        "cost": micros_to_api(call.cost_micros),
        "refunded": micros_to_api(call.refunded_micros),
        "explanation": call.explanation,
    }


def authorization_json(answer: Authorization) -> dict:
    return {
        "allowed": answer.allowed,
        "balance": micros_to_api(answer.balance_micros),
        "max_seconds": answer.max_seconds,
        "reservation_id": answer.reservation_id or None,
        "billable": answer.billable,
    }
