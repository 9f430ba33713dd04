"""`Idempotency-Key` on every POST of the API, with Stripe's semantics (SPEC X2).

A POST that carries the header is done once per (API key, header value):
- the first request claims the key by inserting its row (the unique constraint is the claim,
  committed before the work starts, so a concurrent twin sees it), then stores its answer;
- a retry with the same request gets the stored status and body, and nothing is done again;
- the same key with another method, path or body gets 409, and so does a twin that arrives
  while the first is still in flight (retry it: it then gets the stored answer);
- answers that say nothing about the work (401, 429, 5xx) are not kept: the claim is released
  and a retry runs afresh.
Keys are scoped by the API key that sent them, so two callers never share one. Without the
header nothing changes, not even a query.
"""

import functools
import hashlib
from datetime import datetime, timedelta

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from usage.api.auth import admit_key, key_from_request
from usage.api.errors import (
    RETRY_AFTER_SECONDS,
    ApiError,
    api_error_response,
    error_response,
)
from usage.models import IdempotentRequest

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# How long a first answer is kept, at least: the purge job deletes older rows.
IDEMPOTENCY_RETENTION = timedelta(hours=24)
_UNKEPT_STATUSES = frozenset({401, 429})


def idempotent(view):
    """Wrap an API view so that a POST with an Idempotency-Key is done once."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return view(request, *args, **kwargs)
        if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            return error_response(
                400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters."
            )
        try:
            scope = key_from_request(request).api_key.key_id
        except ApiError:
            # No valid API key: the operation answers 401 itself, and nothing is kept.
            return view(request, *args, **kwargs)
        except (OperationalError, InterfaceError):
            return _unavailable()
        try:
            return _once(view, request, scope=scope, key=key, args=args, kwargs=kwargs)
        except (OperationalError, InterfaceError):
            # The claim could not be written or read: do nothing rather than do it unguarded.
            return _unavailable()

    return wrapper


def _unavailable() -> HttpResponse:
    response = error_response(503, "The service is briefly unavailable; retry the request.")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def _once(view, request: HttpRequest, *, scope: str, key: str, args, kwargs) -> HttpResponse:
    fingerprint = _fingerprint(request)
    try:
        with transaction.atomic():
            claim = IdempotentRequest.objects.create(
                scope=scope, key=key, request_hash=fingerprint, created_at=timezone.now()
            )
    except IntegrityError:
        return _answer_again(request, scope=scope, key=key, fingerprint=fingerprint)
    try:
        response = view(request, *args, **kwargs)
    except BaseException:
        IdempotentRequest.objects.filter(pk=claim.pk).delete()
        raise
    if response.status_code in _UNKEPT_STATUSES or response.status_code >= 500:
        IdempotentRequest.objects.filter(pk=claim.pk).delete()
    else:
        IdempotentRequest.objects.filter(pk=claim.pk).update(
            status=response.status_code,
            body=response.content,
            content_type=response.get("Content-Type", ""),
        )
    return response


def _answer_again(request: HttpRequest, *, scope: str, key: str, fingerprint: str) -> HttpResponse:
    """The answer to a request whose key was claimed before: the stored one, or a 409."""
    try:
        # Counted against a customer key's limit like any request, with the limit's headers.
        admit_key(request)
    except ApiError as exc:
        return api_error_response(exc)
    stored = IdempotentRequest.objects.filter(scope=scope, key=key).first()
    if stored is not None and stored.request_hash != fingerprint:
        return error_response(
            409, f"This {HEADER} was used with another request; use a new key for a new request."
        )
    if stored is None or stored.status is None:
        # In flight (or its answer was not kept and the claim released a moment ago).
        return error_response(
            409, f"A request with this {HEADER} is in progress; retry it in a moment."
        )
    response = HttpResponse(
        bytes(stored.body), status=stored.status, content_type=stored.content_type
    )
    response["Idempotent-Replayed"] = "true"
    return response


def purge_idempotent_requests(*, now: datetime) -> int:
    """Delete the stored answers older than the retention; return how many."""
    deleted, _ = IdempotentRequest.objects.filter(
        created_at__lt=now - IDEMPOTENCY_RETENTION
    ).delete()
    return deleted
