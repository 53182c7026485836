"""The HTTP clients the SDK talks to the hub with, sharing one TLS context per process.

httpx builds a TLS context for each client it makes, loading the CA bundle into OpenSSL:
milliseconds of CPU, with the GIL released. The SDK makes several clients (the exporter, the
hub link at each restart, the lease and approval clients); they share one context, made by the
first of them (``httpx.create_ssl_context()``: ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are
honoured as httpx honours them). Cheaper, and it narrows the moment in which a thread is inside
OpenSSL's certificate loading to one per process, early: a daemon thread caught there by the
interpreter's exit crashes the process when the exit cleans OpenSSL up.

httpx is imported by the first caller, never at ``import agentops_sdk``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["hub_client", "tls_context"]

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The process's TLS context for the hub, made at the first call."""
    global _context
    with _lock:
        if _context is None:
            import httpx

            _context = httpx.create_ssl_context()
        return _context


def hub_client(
    headers: Mapping[str, str],
    timeout: httpx.Timeout | float,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` for the hub, on the shared TLS context (none needed with a
    ``transport`` of a test's own)."""
    import httpx

    if transport is not None:
        return httpx.Client(headers=dict(headers), timeout=timeout, transport=transport)
    return httpx.Client(headers=dict(headers), timeout=timeout, verify=tls_context())
