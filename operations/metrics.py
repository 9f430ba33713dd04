"""Prometheus metrics (issue 18, item 1): request figures per API operation and dashboard view,
and the business gauges an operator alerts on, read from the database at each scrape.

Request figures live in each process. Under gunicorn, set PROMETHEUS_MULTIPROC_DIR to an empty
folder shared by the workers (prometheus_client's multiprocess mode) so that `/metrics` sums
every worker, not only the one that answered the scrape (docs/operations.md).
"""

import os
from datetime import datetime

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

REQUESTS = Counter(
    "meterline_http_requests_total",
    "Requests answered, by API operation or dashboard view, method and status.",
    ["operation", "method", "status"],
)
LATENCY = Histogram(
    "meterline_http_request_duration_seconds",
    "Time to answer a request, by API operation or dashboard view.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def operation_name(request) -> str:
    """Name what a request asked for, with few enough values to be a label: the URL's name
    (`api-v1:authorize`, `usage:page`), or `unmatched` for paths no view answers."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.url_name is None:
        return "unmatched"
    return match.view_name


def observe_request(*, request, status: int, seconds: float) -> None:
    operation = operation_name(request)
    REQUESTS.labels(operation, request.method, str(status)).inc()
    LATENCY.labels(operation).observe(seconds)


class BusinessCollector:
    """Gauges read from the database when Prometheus scrapes: what is waiting, what is late."""

    def __init__(self, *, now: datetime):
        self.now = now

    def collect(self):
        from operations.business import business_figures

        figures = business_figures(now=self.now)
        for name, help_text, labels, samples in figures:
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for label_values, value in samples:
                family.add_metric(label_values, value)
            yield family


def render_metrics(*, now: datetime) -> bytes:
    """Return the exposition text: this process's (or every worker's) request figures and the
    business gauges as of now."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
        request_figures = generate_latest(registry)
    else:
        request_figures = generate_latest(DEFAULT_REGISTRY)
    business = CollectorRegistry(auto_describe=False)
    business.register(BusinessCollector(now=now))
    return request_figures + generate_latest(business)
