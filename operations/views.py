"""The operations endpoints: `/readyz` for orchestrators and `/metrics` for Prometheus."""

import hmac
import logging
import time

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST

from operations.liveness import alert_late_jobs
from operations.metrics import render_metrics
from operations.readiness import readiness

logger = logging.getLogger(__name__)

# Per process: when this process last looked for late jobs (monotonic seconds).
_last_liveness_check = float("-inf")


def _check_late_jobs(now) -> None:
    """Look for late jobs at most every JOB_LIVENESS_CHECK_SECONDS in this process.

    The web tier runs the job-liveness alert because a dead worker cannot report itself;
    probes and scrapes come every few seconds, so throttle the few queries it costs.
    """
    global _last_liveness_check
    if time.monotonic() - _last_liveness_check < settings.JOB_LIVENESS_CHECK_SECONDS:
        return
    _last_liveness_check = time.monotonic()
    try:
        alert_late_jobs(now=now)
    except Exception:
        # The probe answers about readiness; a failed alert check is logged, not a 500.
        logger.exception("Job liveness check failed")


@never_cache
def readyz(request):
    """200 when the database, the cache, the migrations and a task worker are all there."""
    now = timezone.now()
    checks = readiness(now=now)
    ready = all(c.ok for c in checks)
    if checks[0].ok:
        _check_late_jobs(now)
    return JsonResponse(
        {"ready": ready, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}},
        status=200 if ready else 503,
    )


@never_cache
def metrics(request):
    """Prometheus exposition, for a scraper holding METRICS_TOKEN as a bearer token.

    Without METRICS_TOKEN the endpoint does not exist (404): business figures are not public.
    """
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404
    presented = request.headers.get("Authorization", "")
    if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    now = timezone.now()
    _check_late_jobs(now)
    return HttpResponse(render_metrics(now=now), content_type=CONTENT_TYPE_LATEST)
