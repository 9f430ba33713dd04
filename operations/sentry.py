"""Optional error reporting to Sentry (issue 18, item 4), with personal data scrubbed.

On when SENTRY_DSN is set (and the `sentry` extra, `sentry-sdk`, is installed): errors of the
web processes through Sentry's Django integration, errors logged at ERROR, and tasks that
raise in the django-q2 worker through its error reporter. Before anything leaves the process,
`scrub_event` removes email addresses, API key secrets, Stripe keys and secrets, bearer tokens,
cookies, request bodies and anything that looks like a card number: Sentry is a third party,
and none of that is needed to fix a bug.
"""

import re

FILTERED = "[Filtered]"

# Keys whose values are secrets or personal data wherever they appear in an event.
_SENSITIVE_KEY = re.compile(
    r"(authorization|cookie|csrf|session|password|passwd|secret|token|api[_-]?key|signature|"
    r"email|e-mail|card|cvc|cvv|(?:^|_)pan(?:$|_)|iban|phone|x-forwarded-for|remote_addr|ip_address)",
    re.IGNORECASE,
)
_PATTERNS = [
    # An API key as issued: KEY_ID:SECRET (accounts/keys.py). The key id alone is kept.
    (re.compile(r"\b(ml[kp]_[0-9a-f]{16}):[A-Za-z0-9_-]{16,}"), r"\1:" + FILTERED),
    (re.compile(r"(?i)\bbearer\s+\S+"), "Bearer " + FILTERED),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+"), FILTERED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), FILTERED),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
]
# 13 to 19 digits, optionally grouped by spaces or dashes: checked with Luhn before removal so
# that ids and amounts survive.
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _scrub_card(match: re.Match) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def scrub_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _CARD.sub(_scrub_card, text)


def _scrub(value):
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            key: FILTERED
            if isinstance(key, str) and _SENSITIVE_KEY.search(key) and value[key]
            else _scrub(value[key])
            for key in value
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def scrub_event(event: dict, hint=None) -> dict:
    """Return the event with personal data and secrets removed (Sentry's `before_send`)."""
    event = _scrub(event)
    request = event.get("request")
    if isinstance(request, dict):
        # Request bodies carry emails and card fields; the URL, method and headers left are
        # enough to find the failing view.
        request.pop("data", None)
        request.pop("cookies", None)
        request.pop("env", None)
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {"id": user["id"]} if "id" in user else {}
    return event


def scrub_breadcrumb(crumb: dict, hint=None) -> dict:
    return _scrub(crumb)


def init_sentry(
    *, dsn: str, environment: str, release: str, traces_sample_rate: float, transport=None
) -> None:
    """Start the Sentry client in this process (settings call it when SENTRY_DSN is set)."""
    try:
        import sentry_sdk
        from sentry_sdk.integrations.django import DjangoIntegration
    except ImportError as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "SENTRY_DSN is set but sentry-sdk is not installed: `uv sync --extra sentry`."
        ) from exc
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release or None,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        max_request_body_size="never",
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        integrations=[DjangoIntegration()],
        transport=transport,
    )


def sentry_active() -> bool:
    try:
        import sentry_sdk
    except ImportError:
        return False
    return sentry_sdk.get_client().is_active()


class SentryTaskReporter:
    """django-q2's error-reporter interface: `report()` is called in the worker while the
    task's exception is being handled, so Sentry reads it from `sys.exc_info()`."""

    def report(self) -> None:
        import sentry_sdk

        sentry_sdk.capture_exception()


def install_task_reporter() -> None:
    """Make django-q2's worker report failed tasks to Sentry, when Sentry is on.

    django-q2 finds reporters through package entry points (`djangoq.errorreporters`), which
    Meterline, run from a checkout rather than installed, cannot declare. The worker reads the
    reporter from `django_q.conf.error_reporter` (bound into `django_q.worker` on import), so
    both are set here, at app start, before any task runs.
    """
    if not sentry_active():
        return
    import sys

    from django_q import conf

    reporter = conf.ErrorReporter([SentryTaskReporter()])
    if conf.error_reporter is None:
        conf.error_reporter = reporter
    worker = sys.modules.get("django_q.worker")
    if worker is not None and worker.error_reporter is None:
        worker.error_reporter = reporter
