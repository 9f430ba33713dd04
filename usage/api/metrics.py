"""Counters of what the API ingested, for Prometheus (`/metrics`, docs/operations.md).

Counted where the API answers, in the process that answered: prometheus_client's default
registry, summed across gunicorn workers in its multiprocess mode.
"""

from prometheus_client import Counter

EVENTS_INGESTED = Counter(
    "meterline_events_ingested_total",
    "Usage events reported through POST /api/v1/events, by result (accepted, duplicate, rejected).",
    ["result"],
)
CALL_REPORTS = Counter(
    "meterline_call_reports_total",
    "Call reports through PUT /api/v1/calls/{id}, by whether they changed the call.",
    ["outcome"],
)
