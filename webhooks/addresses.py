"""Where outbound webhooks may go: http(s) URLs whose host resolves to public addresses only.

An endpoint URL is chosen by whoever holds the platform key or the admin, so without this
guard a webhook could probe the server's own network (SSRF): the database, a cloud metadata
service at 169.254.169.254, an admin port on localhost. The name is resolved and every address
it resolves to is checked (one private address is enough to refuse); the request then
connects to the address that was checked (`webhooks.transport`), never resolving again, so a
name that answers a public address to the check and 127.0.0.1 to the connection (DNS
rebinding) gets nowhere. `WEBHOOKS_ALLOW_PRIVATE=true` lifts the guard for the demo and tests,
whose receivers listen on 127.0.0.1.
"""

import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

SCHEMES = {"http": 80, "https": 443}


class RefusedUrl(ValueError):
    """The URL is not one webhooks may be sent to; the message says why, for the operator."""


class Unresolvable(RefusedUrl):
    """The URL's host name does not resolve (now)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`ip`) and what to tell the server (`host_header`)."""

    scheme: str
    host: str
    port: int
    host_header: str
    path: str
    ip: str


def private_allowed() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE", False))


def refusal(address: str) -> str | None:
    """Return why webhooks may not go to this IP address, or None if they may."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        # Shared (100.64/10), documentation and benchmark ranges: nobody's public server.
        return f"{address} is not a public address"
    return None


def parse_url(url: str) -> tuple[str, str, int, str, str]:
    """Return (scheme, host, port, host header, path) of an http(s) URL, or raise RefusedUrl."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedUrl(f"Not a valid URL: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise RefusedUrl("The URL must start with http:// or https://.")
    if not parts.hostname:
        raise RefusedUrl("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("The URL must not carry a user name or password.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    host_header = parts.netloc.rpartition("@")[2]
    return scheme, parts.hostname, port or SCHEMES[scheme], host_header, path


def resolve(url: str) -> Target:
    """Resolve the URL's host and return where to connect; raise RefusedUrl if any address it
    resolves to is refused (unless private addresses are allowed) or if it does not resolve."""
    scheme, host, port, host_header, path = parse_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve: {exc}.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not private_allowed():
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise RefusedUrl(f"Webhooks may not go to {host}: {reason}.")
    return Target(scheme, host, port, host_header, path, addresses[0])


def check_url(url: str) -> None:
    """Refuse a URL for an endpoint: not http(s), or a host that is or resolves to a refused
    address. A name that does not resolve yet is accepted (its DNS may come later); every
    delivery checks again before it connects."""
    parse_url(url)
    if private_allowed():
        return  # every address is allowed: nothing to resolve for
    with contextlib.suppress(Unresolvable):
        resolve(url)
