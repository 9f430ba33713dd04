"""Errors of the JSON API and the one body shape they all have (SPEC G1, section 11).

Every error answer is `{"error": {"message": "...", "type": "...", "code": "<status>"}}`.
Bad input is always a 400 `invalid_request_error`, whether the schema or a service refused it;
the API never answers 422.
"""

import json
import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError

from usage.reports import UsageError

logger = logging.getLogger(__name__)

TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found",
    405: "invalid_request_error",
    409: "conflict",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}
# How long a client should wait before retrying after the database was unreachable.
RETRY_AFTER_SECONDS = 1
# Locations pydantic reports that mean nothing to the caller.
_SOURCES = frozenset({"body", "path", "query", "header", "payload"})


class ApiError(Exception):
    """An error answer of the API layer itself (authentication, permission, rate limit)."""

    def __init__(self, status: int, message: str, *, type: str | None = None, headers=None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or TYPE_BY_STATUS.get(status, "api_error")
        self.headers = headers or {}


def error_response(status: int, message: str, *, type: str | None = None) -> HttpResponse:
    body = {
        "error": {
            "message": message,
            "type": type or TYPE_BY_STATUS.get(status, "api_error"),
            "code": str(status),
        }
    }
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def api_error_response(exc: ApiError) -> HttpResponse:
    response = error_response(exc.status, exc.message, type=exc.type)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def validation_message(errors: list[dict]) -> str:
    """Turn pydantic errors into one line: `events.0.input_tokens: Input should be ...`."""
    parts = []
    for error in errors[:3]:
        loc = [str(p) for p in error.get("loc", ()) if p not in _SOURCES]
        text = error.get("msg", "Invalid value")
        parts.append(f"{'.'.join(loc)}: {text}" if loc else text)
    more = len(errors) - 3
    if more > 0:
        parts.append(f"and {more} more error{'s' if more > 1 else ''}")
    return "Invalid request: " + "; ".join(parts) + "."


def install_error_handlers(api: NinjaAPI) -> None:
    """Route every exception an operation raises to the error shape."""

    @api.exception_handler(ApiError)
    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return api_error_response(exc)

    @api.exception_handler(UsageError)
    def usage_error(request: HttpRequest, exc: UsageError) -> HttpResponse:
        return error_response(exc.status, exc.message, type=exc.type)

    @api.exception_handler(NinjaValidationError)
    def validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        return error_response(400, validation_message(exc.errors))

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        # Ninja's own: an unparseable body (400), or no credentials at all (401).
        message = str(exc)
        if exc.status_code == 400 and message.startswith("Cannot parse request body"):
            message = "The request body is not valid JSON."
        elif exc.status_code == 401:
            message = "Missing API key: send 'Authorization: Bearer KEY_ID:KEY_SECRET'."
        return error_response(exc.status_code, message)

    @api.exception_handler(SuspiciousOperation)
    def suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
        if isinstance(exc, RequestDataTooBig):
            return error_response(413, "The request body is too large.")
        return error_response(400, "The request could not be processed.")

    @api.exception_handler(Http404)
    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, "Not found.")

    @api.exception_handler(OperationalError)
    @api.exception_handler(InterfaceError)
    def database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
        # The connection to PostgreSQL failed or was cut (a restart, a failover). The open
        # transaction rolled back; what committed before (one account of a batch) is answered
        # as a duplicate when the platform sends the same request again, which the 503 and
        # Retry-After ask it to do. A 500 would read as a bug.
        logger.warning("Database unavailable in %s %s: %s", request.method, request.path, exc)
        response = error_response(503, "The service is briefly unavailable; retry the request.")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @api.exception_handler(Exception)
    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("Unexpected error in %s %s", request.method, request.path)
        return error_response(500, "The server could not complete the request.")
