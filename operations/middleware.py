"""Request id, log context and request metrics for every request (issue 18, items 1 and 5).

First in MIDDLEWARE, so that it times and tags everything after it, including the answers
other middleware make (redirects, CSRF failures).
"""

import json
import logging
import re
import time
import uuid

from operations.logs import account_var, key_prefix_var, request_id_var
from operations.metrics import observe_request, operation_name

logger = logging.getLogger("meterline.requests")

# A caller's X-Request-ID is kept if it looks like an id (a proxy's or the platform's), so one
# id follows a request through every hop; anything else is replaced, never echoed into logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
API_PATH_PREFIX = "/api/"


def request_id_for(header: str | None) -> str:
    if header and _REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        request_id = request_id_for(request.headers.get("X-Request-ID"))
        tokens = [
            (request_id_var, request_id_var.set(request_id)),
            (account_var, account_var.set(None)),
            (key_prefix_var, key_prefix_var.set(None)),
        ]
        try:
            response = self.get_response(request)
            self._tag_api_key(request)
            seconds = time.perf_counter() - started
            response["X-Request-ID"] = request_id
            if request.path_info.startswith(API_PATH_PREFIX) and response.status_code >= 400:
                _add_request_id_to_error(response, request_id)
            observe_request(request=request, status=response.status_code, seconds=seconds)
            logger.info(
                "%s %s %s",
                request.method,
                request.path_info,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path_info,
                    "status": response.status_code,
                    "operation": operation_name(request),
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
            return response
        finally:
            for var, token in reversed(tokens):
                var.reset(token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Dashboard pages name their account in the URL; membership is checked by the view.
        public_id = view_kwargs.get("public_id")
        if isinstance(public_id, str):
            account_var.set(public_id)

    @staticmethod
    def _tag_api_key(request) -> None:
        """After an API request, note the key that authenticated it (ninja's `request.auth`:
        a `usage.reads.keys.LoadedKey`): its key id, the readable prefix, never the secret."""
        loaded = getattr(request, "auth", None)
        api_key = getattr(loaded, "api_key", None)
        if api_key is None:
            return
        key_prefix_var.set(api_key.key_id)
        account = getattr(loaded, "account", None)
        if account is not None:
            account_var.set(account.public_id)


def _add_request_id_to_error(response, request_id: str) -> None:
    """Put the request id in the API's error body (SPEC G1's shape, one more field), so that
    a customer quoting an error gives support the id that finds its log lines."""
    if not response.get("Content-Type", "").startswith("application/json"):
        return
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body["error"]["request_id"] = request_id
        response.content = json.dumps(body)
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
