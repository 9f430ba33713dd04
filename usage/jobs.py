"""Usage's scheduled jobs (SPEC O3); billing.jobs registers every job's schedule.

As in billing.jobs: the job reads the clock once, takes keyword-only arguments and ignores
unknown ones (a schedule's row outlives a release), and makes one call into a service.
"""

from django.utils import timezone

from usage.api.idempotency import purge_idempotent_requests
from usage.spending.holds import release_expired_holds


def release_holds(**_) -> str:
    """Release the credit held by call authorizations that expired."""
    return f"{release_expired_holds(now=timezone.now())} hold(s) released"


def purge_idempotency_keys(**_) -> str:
    """Delete the stored answers of Idempotency-Key requests past their retention (24 h)."""
    return f"{purge_idempotent_requests(now=timezone.now())} stored answer(s) purged"
