"""`/api/v1/webhook_endpoints`: the operator's webhook endpoints, with the platform key.

A django-ninja router mounted on the API of `usage.api`, like `usage.api.invoices`; each
operation makes one call into `webhooks.endpoints`. The signing secret is in the answers of
create and rotate_secret only. This module must not import `usage.api.app`, which mounts it.
"""

from datetime import datetime
from typing import Annotated

from django.http import HttpRequest
from django.utils import timezone
from ninja import Path, Query, Router, Status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from usage.api.auth import platform_key
from usage.api.errors import ApiError
from usage.api.schemas import PRINTABLE, ErrorOut
from webhooks import endpoints
from webhooks.event_types import EVENT_TYPES
from webhooks.models import WebhookEndpoint

router = Router(tags=["webhooks"])

PLATFORM_ERRORS = frozenset({400, 401, 403, 500})
MAX_LIMIT = 100
_EXAMPLE = {
    "id": "we_5c1f0a9e2b7d4c61",
    "url": "https://platform.example.com/meterline/webhooks",
    "description": "Billing events for the platform",
    "event_types": ["balance.low", "invoice.paid"],
    "enabled": True,
    "created_at": "2026-12-07T18:00:00Z",
    "failing_since": None,
    "disabled_at": None,
    "disabled_reason": "",
}
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105  # nosec B105 - a docs example
_TYPES = ", ".join(EVENT_TYPES)


# Text without control characters (PostgreSQL refuses NUL): a URL, a description, a type name.
Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2000,
        pattern=PRINTABLE,
        strict=True,
        description="An http(s) URL on a public address.",
    ),
]
Description = Annotated[str, Field(max_length=255, pattern=PRINTABLE, strict=True)]
EventType = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE, strict=True)]


class EndpointIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": _EXAMPLE["url"],
                    "description": _EXAMPLE["description"],
                    "event_types": _EXAMPLE["event_types"],
                }
            ]
        },
    )
    url: Url
    description: Description = ""
    event_types: list[EventType] = Field(
        default_factory=list, max_length=50, description=f"Empty: all types. One of {_TYPES}."
    )
    enabled: StrictBool = True


class EndpointPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"enabled": False}, {"event_types": []}]}
    )
    url: Url | None = None
    description: Description | None = None
    event_types: list[EventType] | None = Field(None, max_length=50)
    enabled: StrictBool | None = Field(None, description="Enabling again sends what waits for it.")


class EndpointOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})
    id: str
    url: str
    description: str
    event_types: list[str] = Field(description="Empty: every event type.")
    enabled: bool
    created_at: datetime
    failing_since: datetime | None = Field(description="First failure since the last success.")
    disabled_at: datetime | None
    disabled_reason: str


class EndpointWithSecretOut(EndpointOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**_EXAMPLE, "secret": _SECRET}]})
    secret: str = Field(description="The signing secret; shown only in this answer.")


class EndpointsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"webhook_endpoints": [_EXAMPLE], "has_more": False}]}
    )
    webhook_endpoints: list[EndpointOut]
    has_more: bool = Field(description="More follow: ask with starting_after.")


class DeletedOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": _EXAMPLE["id"], "deleted": True}]}
    )
    id: str
    deleted: bool


def _endpoint_json(endpoint: WebhookEndpoint, secret: str | None = None) -> dict:
    data = {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
        "created_at": endpoint.created_at,
        "failing_since": endpoint.failing_since,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
    }
    if secret is not None:
        data["secret"] = secret
    return data


def _endpoint(endpoint_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(public_id=endpoint_id).first()
    if endpoint is None:
        raise ApiError(404, f"No webhook endpoint '{endpoint_id}'.")
    return endpoint


def _id_param():
    return Path(..., min_length=1, max_length=32, pattern=PRINTABLE, description="`we_…`")


@router.post(
    "/webhook_endpoints",
    operation_id="create_webhook_endpoint",
    auth=platform_key,
    response={201: EndpointWithSecretOut, PLATFORM_ERRORS: ErrorOut},
    summary="Create a webhook endpoint",
)
def create_webhook_endpoint(request: HttpRequest, payload: EndpointIn):
    """Create an endpoint; the answer carries its signing secret, shown only here."""
    try:
        created = endpoints.create_endpoint(**payload.model_dump(), now=timezone.now())
    except endpoints.InvalidEndpoint as exc:
        raise ApiError(400, str(exc)) from None
    return Status(201, _endpoint_json(created.endpoint, created.secret))


@router.get(
    "/webhook_endpoints",
    operation_id="list_webhook_endpoints",
    auth=platform_key,
    response={200: EndpointsOut, PLATFORM_ERRORS: ErrorOut},
    summary="List webhook endpoints",
)
def list_webhook_endpoints(
    request: HttpRequest,
    limit: int = Query(20, ge=1, le=MAX_LIMIT, description="How many, 1 to 100."),
    starting_after: str = Query(
        "", max_length=32, pattern=PRINTABLE, description="The id of the previous page's last."
    ),
):
    """The endpoints, oldest first, without their secrets."""
    found = WebhookEndpoint.objects.order_by("pk")
    if starting_after:
        cursor = WebhookEndpoint.objects.filter(public_id=starting_after).first()
        if cursor is None:
            raise ApiError(400, f"No webhook endpoint '{starting_after}' to start after.")
        found = found.filter(pk__gt=cursor.pk)
    page = list(found[: limit + 1])
    return {
        "webhook_endpoints": [_endpoint_json(e) for e in page[:limit]],
        "has_more": len(page) > limit,
    }


@router.get(
    "/webhook_endpoints/{endpoint_id}",
    operation_id="get_webhook_endpoint",
    auth=platform_key,
    response={200: EndpointOut, PLATFORM_ERRORS | {404}: ErrorOut},
    summary="Retrieve a webhook endpoint",
)
def get_webhook_endpoint(request: HttpRequest, endpoint_id: str = _id_param()):
    """One endpoint, without its secret."""
    return _endpoint_json(_endpoint(endpoint_id))


@router.patch(
    "/webhook_endpoints/{endpoint_id}",
    operation_id="update_webhook_endpoint",
    auth=platform_key,
    response={200: EndpointOut, PLATFORM_ERRORS | {404}: ErrorOut},
    summary="Update a webhook endpoint",
)
def update_webhook_endpoint(
    request: HttpRequest, payload: EndpointPatch, endpoint_id: str = _id_param()
):
    """Change the URL, description, event types or whether it is enabled."""
    try:
        endpoint = endpoints.update_endpoint(
            endpoint=_endpoint(endpoint_id),
            changes=payload.model_dump(exclude_unset=True, exclude_none=True),
            now=timezone.now(),
            reason="Disabled through the API",
        )
    except endpoints.InvalidEndpoint as exc:
        raise ApiError(400, str(exc)) from None
    return _endpoint_json(endpoint)


@router.delete(
    "/webhook_endpoints/{endpoint_id}",
    operation_id="delete_webhook_endpoint",
    auth=platform_key,
    response={200: DeletedOut, PLATFORM_ERRORS | {404}: ErrorOut},
    summary="Delete a webhook endpoint",
)
def delete_webhook_endpoint(request: HttpRequest, endpoint_id: str = _id_param()):
    """Delete the endpoint and its pending deliveries; nothing more is sent to it."""
    endpoint = _endpoint(endpoint_id)
    endpoints.delete_endpoint(endpoint=endpoint)
    return {"id": endpoint_id, "deleted": True}


@router.post(
    "/webhook_endpoints/{endpoint_id}/rotate_secret",
    operation_id="rotate_webhook_secret",
    auth=platform_key,
    response={200: EndpointWithSecretOut, PLATFORM_ERRORS | {404}: ErrorOut},
    summary="Rotate a webhook endpoint's signing secret",
)
def rotate_webhook_secret(request: HttpRequest, endpoint_id: str = _id_param()):
    """Give the endpoint a new secret, shown only here; the old one signs for 24 more hours."""
    endpoint = _endpoint(endpoint_id)
    secret = endpoints.rotate_secret(endpoint=endpoint, now=timezone.now())
    return _endpoint_json(endpoint, secret)
