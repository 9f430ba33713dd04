"""Webhooks' scheduled job (SPEC O3); billing.jobs registers every job's schedule.

As in billing.jobs: it reads the clock once, takes keyword-only arguments and ignores unknown
ones (a schedule's row outlives a release), and makes one call into a service.
"""

from django.utils import timezone

from webhooks.delivery import retry_due_deliveries


def retry_deliveries(**_) -> str:
    """Queue due webhook deliveries: retries, and those a lost task left behind."""
    return f"{retry_due_deliveries(now=timezone.now())} webhook delivery(ies) queued"
