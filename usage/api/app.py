"""JSON API v1: gateway authorization, usage reports and customer reads (SPEC section 11).

Each operation parses its input, makes one call into the usage services and turns the answer or
the exception into JSON. This is the hot path (20,000 events/s batched, authorize p99 < 10 ms):
responses are serialized directly rather than re-validated against the response schemas, and
request bodies are parsed with `Decimal` for every JSON number so that money never is a float.
"""

import functools
import json
from collections import Counter
from decimal import Decimal

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import re_path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Path
from ninja.openapi.docs import DocsBase, Swagger
from ninja.parser import Parser

from billing.money import micros_to_api
from usage import selectors
from usage.api.answers import authorization_json, call_json, json_response
from usage.api.auth import RATE_LIMIT_ATTR, admit_key, customer_key, platform_key
from usage.api.customers import router as customers_router
from usage.api.errors import ApiError, api_error_response, error_response, install_error_handlers
from usage.api.idempotency import idempotent
from usage.api.invoices import router as billing_router
from usage.api.metrics import CALL_REPORTS, EVENTS_INGESTED
from usage.api.schemas import (
    PRINTABLE,
    AuthorizeIn,
    AuthorizeOut,
    BalanceOut,
    CallIn,
    CallOut,
    ErrorOut,
    EventsIn,
    EventsOut,
    PricingOut,
    RefundIn,
    UsageOut,
)
from usage.api.webhook_endpoints import router as webhooks_router
from usage.ingest import calls
from usage.ingest.customers import ingest_customer_events, report_customer_call
from usage.reports import CallReport, EventReport
from usage.spending import authorize as gateway


class DecimalJSONParser(Parser):
    """Parse JSON numbers with a fraction as Decimal: '0.1' stays 0.1, not 0.1000000000000000055."""

    def parse_body(self, request: HttpRequest):
        return json.loads(request.body, parse_float=Decimal)


class LocalDocs(DocsBase):
    """API docs that load nothing from another host (SPEC D5: no CDN).

    With `ninja` in INSTALLED_APPS, ninja's Swagger UI is served from our own static files;
    otherwise a plain page lists the operations and links the OpenAPI schema.
    """

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs) -> HttpResponse:
        if "ninja" in settings.INSTALLED_APPS:
            return Swagger().render_page(request, api, **kwargs)
        schema = api.get_openapi_schema(path_params=kwargs)
        rows = []
        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                rows.append((method.upper(), path, operation.get("summary", "")))
        html = format_html(
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>{title}</title></head><body><main><h1>{title} {version}</h1>"
            "<p>{description}</p><p>Machine-readable schema: <a href='{url}'>{url}</a></p>"
            "<table><thead><tr><th>Method</th><th>Path</th><th>Summary</th></tr></thead>"
            "<tbody>{rows}</tbody></table></main></body></html>",
            title=api.title,
            version=api.version,
            description=api.description,
            url=self.get_openapi_url(api, kwargs),
            rows=format_html_join(
                "", "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>", rows
            ),
        )
        return HttpResponse(html)


class MeterlineAPI(NinjaAPI):
    """NinjaAPI whose every answer under /api/v1/ is JSON in the error shape when it fails,
    and carries the rate-limit headers when a customer key asked."""

    @property
    def urls(self):
        patterns, app_name, namespace = super().urls
        for pattern in patterns:
            pattern.callback = _api_view(pattern.callback)
        patterns.append(re_path(r"^.*$", _api_view(_unknown_path)))
        return patterns, app_name, namespace


def _api_view(view):
    """An API view: exempt from CSRF and answering in the error shape.

    The API authenticates by bearer key, never by the session cookie, so there is no cross-site
    request to forge; without the exemption, an unsafe method on a path no operation serves
    (ninja exempts only its operations) gets Django's HTML CSRF page before the view can answer
    the JSON 404 and count the key's request.
    """
    return csrf_exempt(_finish_response(idempotent(view)))


def _unknown_path(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    raise Http404


def _finish_response(view):
    """Give 404 and 405 answers made outside the operations (URL routing, ninja's method
    dispatch) the error shape, and add the rate-limit headers of a customer key."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            response = _admit_unrouted(
                request, error_response(404, f"No API operation at {request.path}.")
            )
        if response.status_code == 405 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            allow = response.get("Allow", "")
            response = error_response(
                405, f"{request.method} is not allowed here; allowed: {allow}."
            )
            response["Allow"] = allow
            response = _admit_unrouted(request, response)
        status = getattr(request, RATE_LIMIT_ATTR, None)
        if status is not None:
            for name, value in status.headers.items():
                response[name] = value
        return response

    return wrapper


def _admit_unrouted(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Count a request that reached no operation (404, 405) if a valid customer key made it.

    Every request of a customer key counts and is labelled (SPEC G2), as at OpenAI, but routing
    answers before any operation checks the key, so it is checked here. A missing, wrong or
    revoked key leaves the answer as it is: a caller without the secret learns nothing about
    the key and spends nothing of its limit (admit_key counts only after the secret checks out).
    """
    if "Authorization" not in request.headers or hasattr(request, RATE_LIMIT_ATTR):
        return response
    try:
        admit_key(request)
    except ApiError as exc:
        # Over the limit is a 429 on every path; any other refusal is about the key.
        return api_error_response(exc) if exc.status == 429 else response
    except (OperationalError, InterfaceError):
        # The database is out: the key cannot be checked, and the answer does not depend on it.
        return response
    return response


api = MeterlineAPI(
    title="Meterline API",
    version="1",
    description=(
        "Usage reports from the operator's platform and spending control for its customers. "
        "Authenticate with 'Authorization: Bearer KEY_ID:KEY_SECRET'. Money is a decimal string "
        'in USD. Errors are {"error": {"message", "type", "code", "request_id"}}; invalid input '
        "is 400. "
        "Every request with a customer key counts against its per-minute limit, even one to an "
        "unknown path or with the wrong method, and every answer to it carries x-ratelimit-* "
        "headers."
    ),
    urls_namespace="api-v1",
    docs=LocalDocs(),
    parser=DecimalJSONParser(),
)
install_error_handlers(api)
# GET /invoices lives with the invoices (usage.api.invoices) and shares this API's auth and errors.
api.add_router("/", billing_router)
# The platform's customers by its own ids (usage.api.customers).
api.add_router("/", customers_router)
api.add_router("/", webhooks_router)

_RATE_HEADERS = {
    "x-ratelimit-limit-requests": "Requests allowed per minute for this key.",
    "x-ratelimit-remaining-requests": "Requests left in the current minute.",
    "x-ratelimit-reset-requests": "Unix time at which the current minute ends.",
}


def _customer_docs(*statuses: int) -> dict:
    """OpenAPI extras of a customer operation: the rate-limit headers on every answer."""
    headers = {
        name: {"description": text, "schema": {"type": "integer"}}
        for name, text in _RATE_HEADERS.items()
    }
    # Not on 401: without a valid key there is no limit to report.
    responses = {status: {"headers": dict(headers)} for status in statuses}
    responses[429]["headers"]["Retry-After"] = {
        "description": "Seconds until the limit resets.",
        "schema": {"type": "integer", "minimum": 1},
    }
    return {"responses": responses}


CUSTOMER_ERRORS = frozenset({400, 401, 403, 429, 500})
PLATFORM_ERRORS = frozenset({400, 401, 403, 500})


# Customer key ------------------------------------------------------------------------------


@api.post(
    "/authorize",
    auth=customer_key,
    response={200: AuthorizeOut, CUSTOMER_ERRORS | {402}: ErrorOut},
    openapi_extra=_customer_docs(200, 400, 402, 403, 429, 500),
    tags=["gateway"],
)
def authorize(request: HttpRequest, payload: AuthorizeIn):
    """Ask whether the key's account may start a call or request now (G1, G3)."""
    answer = gateway.authorize(
        key=request.auth,
        feature=payload.feature,
        model=payload.model,
        provider=payload.provider,
        start_within=payload.start_within,
        call_id=payload.call_id,
        direction=payload.direction.value,
        destination=payload.destination,
        now=timezone.now(),
    )
    return json_response(authorization_json(answer))


@api.get(
    "/usage",
    auth=customer_key,
    response={200: UsageOut, CUSTOMER_ERRORS: ErrorOut},
    openapi_extra=_customer_docs(200, 400, 403, 429, 500),
    tags=["account"],
)
def usage(request: HttpRequest):
    """The current period's usage, cost, allowance and balance."""
    return json_response(selectors.usage_summary(account=request.auth.account, now=timezone.now()))


@api.get(
    "/balance",
    auth=customer_key,
    response={200: BalanceOut, CUSTOMER_ERRORS: ErrorOut},
    openapi_extra=_customer_docs(200, 400, 403, 429, 500),
    tags=["account"],
)
def balance(request: HttpRequest):
    """The credit balance, the credit held by authorized calls and what is available."""
    return json_response(selectors.balance_summary(key=request.auth, now=timezone.now()))


@api.get(
    "/pricing",
    auth=customer_key,
    response={200: PricingOut, CUSTOMER_ERRORS: ErrorOut},
    openapi_extra=_customer_docs(200, 400, 403, 429, 500),
    tags=["account"],
)
def pricing(request: HttpRequest):
    """The account's plan, rates, allowance and the model prices that apply to it."""
    return json_response(selectors.pricing_for(account=request.auth.account, now=timezone.now()))


# Platform key ------------------------------------------------------------------------------


def _call_id_param():
    return Path(
        ..., min_length=1, max_length=100, pattern=PRINTABLE, description="The platform's id."
    )


@api.put(
    "/calls/{call_id}",
    auth=platform_key,
    response={200: CallOut, PLATFORM_ERRORS | {404, 409}: ErrorOut},
    tags=["usage"],
)
def report_call(request: HttpRequest, payload: CallIn, call_id: str = _call_id_param()):
    """Report a call's state; it is charged once, when it first reaches a final state (U1-U4).

    An identical repeat of a final report answers 200; a different one 409.
    """
    report = CallReport(
        call_id=call_id,
        account=payload.account or "",
        customer=payload.customer or "",
        status=payload.status.value,
        direction=payload.direction.value,
        connected_at=payload.connected_at,
        ended_at=payload.ended_at,
        transferred_at=payload.transferred_at,
        hold_seconds=payload.hold_seconds,
        destination=payload.destination,
        llm=payload.llm,
        reservation_id=payload.reservation_id,
    )
    reported = report_customer_call(report=report, now=timezone.now())
    CALL_REPORTS.labels("changed" if reported.changed else "repeat").inc()
    return json_response(
        call_json(reported.call, account=reported.account, customer=reported.customer)
    )


@api.post(
    "/calls/{call_id}/refund",
    auth=platform_key,
    response={200: CallOut, PLATFORM_ERRORS | {404}: ErrorOut},
    tags=["usage"],
)
def refund_call(
    request: HttpRequest, call_id: str = _call_id_param(), payload: RefundIn | None = None
):
    """Credit back what a call was charged, when it failed through the platform's fault (P4).

    Idempotent: a second refund of the same call changes nothing and answers the call again.
    """
    reason = payload.reason if payload is not None else ""
    call = calls.refund_call(call_id=call_id, now=timezone.now(), reason=reason)
    return json_response(
        call_json(call, account=call.account.public_id, customer=call.account.external_id)
    )


@api.post(
    "/events",
    auth=platform_key,
    response={200: EventsOut, PLATFORM_ERRORS | {413}: ErrorOut},
    tags=["usage"],
)
def report_events(request: HttpRequest, payload: EventsIn):
    """Report up to 1,000 chat, SMS, LLM and embedding events; one result per event, in order.

    Each event is accepted (charged), a duplicate of an earlier one with the same id and content
    (charged once, its cost repeated), or rejected with a reason (e.g. 409 for an id reused
    with other content). The request itself succeeds even when some events are rejected.
    """
    reports = [
        EventReport(
            id=e.id,
            account=e.account or "",
            customer=e.customer or "",
            type=e.type.value,
            occurred_at=e.occurred_at,
            messages=e.messages,
            count=e.count,
            model=e.model,
            provider=e.provider,
            input_tokens=e.input_tokens,
            output_tokens=e.output_tokens,
            start_within=e.start_within,
            standard_price=e.standard_price,
            flex_price=e.flex_price,
        )
        for e in payload.events
    ]
    results = ingest_customer_events(reports=reports, now=timezone.now())
    for status, count in Counter(r.status for r in results).items():
        EVENTS_INGESTED.labels(status).inc(count)
    out = []
    for result in results:
        item = {"id": result.id, "status": result.status, "cost": micros_to_api(result.cost_micros)}
        if result.reason:
            item["reason"] = result.reason
        if result.status == "rejected":
            item["code"] = str(result.code)
        out.append(item)
    return json_response({"results": out})
