"""Webhook signatures: what lets a receiver trust that a delivery comes from the hub, unchanged
and recent.

Each delivery carries ``AgentOps-Signature: t=<unix seconds>,v1=<hex>``, where the hex is the
HMAC-SHA256, keyed with the webhook's secret (the whole ``whsec_…`` string, UTF-8), of the
timestamp, a dot and the exact bytes of the body. Receivers recompute it, compare in constant
time, and refuse a timestamp too far from their clock (replays): docs/notifications.md has
the snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["SIGNATURE_HEADER", "new_webhook_secret", "signature"]

SIGNATURE_HEADER = "AgentOps-Signature"
SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 43 URL-safe characters (256 bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the signature header for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
