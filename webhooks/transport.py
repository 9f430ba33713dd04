"""One webhook request: POST to the checked address, 10 s at most, no redirect followed.

urllib3 (the HTTP library under requests) is used directly because it lets the connection go
to the IP address `webhooks.addresses` checked while the Host header, TLS SNI and certificate
check use the URL's name: pinning the address is what defeats DNS rebinding.
"""

import time
from dataclasses import dataclass

import urllib3

from webhooks.addresses import RefusedUrl, Target, resolve

TIMEOUT_SECONDS = 10.0
# What an attempt keeps of the answer's body, for staff reading the admin.
EXCERPT_CHARS = 1000


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status code, or an error (refused, timeout, connection)."""

    status_code: int | None
    latency_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _pool(target: Target, timeout_seconds: float) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(total=timeout_seconds)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.ip,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    return urllib3.HTTPConnectionPool(
        target.ip, target.port, timeout=timeout, retries=False, maxsize=1
    )


def post(*, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float) -> Answer:
    """POST `body` to `url` after the address check; return the answer, never raise for the
    network's or the receiver's failures."""
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = resolve(url)
    except RefusedUrl as exc:
        return Answer(status_code=None, latency_ms=elapsed_ms(), error=str(exc))
    pool = _pool(target, timeout_seconds)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={
                **headers,
                "Host": target.host_header,
                "Content-Type": "application/json",
                "User-Agent": "Meterline-Webhooks/1",
            },
            redirect=False,  # a 3xx is an answer, and not a success
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            content = response.read(EXCERPT_CHARS * 4)
        finally:
            response.release_conn()
        return Answer(
            status_code=response.status,
            latency_ms=elapsed_ms(),
            excerpt=content.decode("utf-8", "replace")[:EXCERPT_CHARS],
        )
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return Answer(status_code=None, latency_ms=elapsed_ms(), error=_describe(exc))
    finally:
        pool.close()


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return "Timed out."
    return f"{type(exc).__name__}: {exc}"[:500]
