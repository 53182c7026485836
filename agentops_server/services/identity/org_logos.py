"""The org's logo: an uploaded image, kept in the database so every hub process can serve it.

Uploads are PNG, JPEG, WebP or GIF, told by their first bytes (never by what the client claims;
no SVG: it can carry script), at most :data:`LOGO_MAX_BYTES`. Uploading clears the org's logo
URL; removing the logo removes either. Every change is audited in the transaction that makes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import OrgLogo
from agentops_server.refusals import NotFound, TooLarge, Unsupported
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.identity.orgs import OrgProfile, get_profile, org_row

__all__ = [
    "LOGO_MAX_BYTES",
    "Logo",
    "delete_logo",
    "get_logo",
    "logo_too_large",
    "logo_type",
    "set_logo",
]


LOGO_MAX_BYTES = 256 * 1024

_LOGO_SIGNATURES: tuple[tuple[str, dict[int, bytes]], ...] = (
    ("image/png", {0: b"\x89PNG\r\n\x1a\n"}),
    ("image/jpeg", {0: b"\xff\xd8\xff"}),
    ("image/gif", {0: b"GIF87a"}),
    ("image/gif", {0: b"GIF89a"}),
    ("image/webp", {0: b"RIFF", 8: b"WEBP"}),
)
"""(content type, {offset: magic bytes}): the four image formats every browser shows."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Logo:
    """An uploaded logo: its bytes and their content type."""

    content_type: str
    data: bytes
    updated_at: dt.datetime


async def set_logo(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, data: bytes
) -> OrgProfile:
    """Keep ``data`` as the org's logo (and drop its logo URL); audit; commit.

    Refusals: ``logo_too_large``, ``unsupported_logo_type``.
    """
    if len(data) > LOGO_MAX_BYTES:
        raise logo_too_large()
    content_type = logo_type(data)
    if content_type is None:
        raise Unsupported(
            "unsupported_logo_type", "Upload the logo as a PNG, JPEG, WebP or GIF image."
        )
    org = await org_row(session, org_id)
    now = dt.datetime.now(dt.UTC)
    logo = await session.get(OrgLogo, org_id)
    before = {"logo_url": org.logo_url, "logo": _logo_state(logo) if logo else None}
    if logo is None:
        logo = OrgLogo(org_id=org_id, content_type=content_type, data=data, updated_at=now)
        session.add(logo)
    else:
        logo.content_type, logo.data, logo.updated_at = content_type, data, now
    org.logo_url, org.updated_at = None, now
    await audit.record(
        session,
        org_id,
        actor,
        "org.logo_uploaded",
        target_type="org",
        target_id=org_id,
        before=before,
        after={"logo_url": None, "logo": _logo_state(logo)},
    )
    await session.commit()
    return await get_profile(session, org_id)


async def get_logo(session: AsyncSession, org_id: uuid.UUID) -> Logo:
    """The org's uploaded logo; ``logo_not_found`` if it has none."""
    logo = await session.get(OrgLogo, org_id)
    if logo is None:
        raise NotFound("logo_not_found", "This org has no uploaded logo.")
    return Logo(content_type=logo.content_type, data=logo.data, updated_at=logo.updated_at)


async def delete_logo(session: AsyncSession, org_id: uuid.UUID, actor: Actor) -> None:
    """Remove the org's logo, uploaded or URL; audit; commit. Without a logo, nothing changes."""
    org = await org_row(session, org_id)
    logo = await session.get(OrgLogo, org_id)
    if logo is None and org.logo_url is None:
        return
    before = {"logo_url": org.logo_url, "logo": _logo_state(logo) if logo else None}
    if logo is not None:
        await session.delete(logo)
    org.logo_url, org.updated_at = None, dt.datetime.now(dt.UTC)
    await audit.record(
        session,
        org_id,
        actor,
        "org.logo_removed",
        target_type="org",
        target_id=org_id,
        before=before,
        after={"logo_url": None, "logo": None},
    )
    await session.commit()


def logo_too_large() -> TooLarge:
    """The refusal of a logo over :data:`LOGO_MAX_BYTES`."""
    return TooLarge(
        "logo_too_large",
        f"A logo is at most {LOGO_MAX_BYTES // 1024} KiB.",
        max_bytes=LOGO_MAX_BYTES,
    )


def logo_type(data: bytes) -> str | None:
    """The content type of ``data`` by its magic bytes, if it is an image the hub takes."""
    for content_type, magic in _LOGO_SIGNATURES:
        if all(data[at : at + len(part)] == part for at, part in magic.items()):
            return content_type
    return None


def _logo_state(logo: OrgLogo) -> dict[str, Any]:
    """What the audit log keeps of an uploaded logo: its type, size and digest."""
    return {
        "content_type": logo.content_type,
        "bytes": len(logo.data),
        "sha256": hashlib.sha256(logo.data).hexdigest(),
    }
