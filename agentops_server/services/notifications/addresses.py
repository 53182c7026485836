"""Where a webhook may point: never, unless the hub's settings allow it, at an address inside
the hub's own network (SSRF).

Two checks, because a name can change what it resolves to between them:

- :func:`check_webhook_url` when a webhook is created or changed: the form (``http`` or
  ``https``, a host, no credentials), and, for an IP literal, the address itself;
- :func:`resolve_destination` before every delivery: the host is resolved, every address it
  resolves to is checked, and the delivery then connects to the address that was checked (not
  to the name again), so a name that answers a public address to the check and a private one to
  the connection (DNS rebinding) reaches nothing.

An address is refused when it is private, loopback, link-local, multicast, reserved,
unspecified or otherwise not globally reachable (IPv4-mapped IPv6 addresses are judged by their
IPv4 address), unless ``AGENTOPS_WEBHOOKS_ALLOW_PRIVATE`` is true.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from urllib.parse import urlsplit

from agentops_server.refusals import Invalid

__all__ = [
    "Destination",
    "RefusedAddress",
    "check_webhook_url",
    "is_refused_address",
    "resolve_destination",
]

_SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(Exception):
    """The webhook's host resolves to an address the hub may not reach (or to none)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Destination:
    """Where one delivery connects: the ``address`` that was checked, for ``host`` and ``port``."""

    host: str
    port: int
    address: str


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """``url`` as stored, or ``Invalid("invalid_webhook_url")`` for a URL that is not an
    ``http(s)://host/…`` URL without credentials, and ``Invalid("webhook_url_refused")`` for an
    IP literal the hub may not reach."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Invalid("invalid_webhook_url", "The webhook URL cannot be parsed.") from None
    if len(url) > MAX_URL_LENGTH or parts.scheme not in _SCHEMES or not parts.hostname:
        raise Invalid(
            "invalid_webhook_url",
            f"A webhook URL is http:// or https:// with a host, at most {MAX_URL_LENGTH} "
            "characters.",
        )
    if parts.username is not None or parts.password is not None:
        raise Invalid(
            "invalid_webhook_url",
            "A webhook URL carries no credentials: verify deliveries with their signature.",
        )
    if port == 0:
        raise Invalid("invalid_webhook_url", "A webhook URL's port is 1 to 65535.")
    literal = _ip_literal(parts.hostname)
    if literal is not None and not allow_private and is_refused_address(literal):
        raise Invalid(
            "webhook_url_refused",
            "The webhook URL points at a private, loopback, link-local or reserved address "
            "(the hub's setting AGENTOPS_WEBHOOKS_ALLOW_PRIVATE allows them).",
        )
    return url


async def resolve_destination(url: str, *, allow_private: bool) -> Destination:
    """Resolve the host of ``url`` and pick the address to connect to; ``RefusedAddress`` when
    it resolves to nothing, or to any address the hub may not reach."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _SCHEMES.get(parts.scheme, 443)
    literal = _ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise RefusedAddress(f"{host} does not resolve: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses:
        raise RefusedAddress(f"{host} resolves to no address")
    if not allow_private:
        refused = [str(address) for address in addresses if is_refused_address(address)]
        if refused:
            raise RefusedAddress(
                f"{host} resolves to {', '.join(refused)}, a private, loopback, link-local or "
                "reserved address (AGENTOPS_WEBHOOKS_ALLOW_PRIVATE allows them)"
            )
    return Destination(host=host, port=port, address=str(addresses[0]))


def is_refused_address(address: IPAddress) -> bool:
    """Whether ``address`` is one a webhook may not reach by default."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None
