"""Secrets the hub must read back (TOTP seeds, webhook signing secrets), sealed at rest.

Each purpose seals with its own Fernet key, derived (HKDF-SHA256) from ``AGENTOPS_SECRET_KEY``
and the purpose's name, so a value sealed for one purpose never opens for another; a database
copy without the hub's secret key opens none of them. Changing the secret key makes every sealed
value unreadable (``cryptography.fernet.InvalidToken`` on opening).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["sealing_key"]


def sealing_key(secret_key: str, purpose: str) -> Fernet:
    """The Fernet key sealing ``purpose``'s secrets (``mfa-secrets``, ``webhook-secrets``)."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"agentops-hub:{purpose}".encode()
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))
