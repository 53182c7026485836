"""One-time sign-in links: how ``agentops-hub demo`` signs a browser in as its demo owner.

A link carries a signed token of its own purpose (``sign_in_link``, so no other token of the
hub is accepted as one, nor one as another), naming the user, the org and an id, valid for
:data:`SIGN_IN_LINK_TTL` seconds. Using it opens a hub session *with that id*: the id is the
sessions table's key, so a second use (or two at once) finds it taken and is refused
(``sign_in_link_used``), with no table of spent links. Links work only on a hub run in demo mode
(``Settings.demo``): a production hub refuses them, whoever signed them.
"""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import Membership, UserSession
from agentops_server.db.tenancy import tenant
from agentops_server.refusals import Forbidden, Invalid
from agentops_server.security.tokens import InvalidToken, decode_token, encode_token
from agentops_server.services.identity.sessions import TokenPair, start_session
from agentops_server.settings import Settings

__all__ = ["SIGN_IN_LINK_TTL", "SignInLink", "issue_sign_in_link", "use_sign_in_link"]

SIGN_IN_LINK_TTL = 900
"""Seconds a sign-in link stays valid (unused)."""
_PURPOSE = "sign_in_link"


@dataclasses.dataclass(frozen=True, slots=True)
class SignInLink:
    """Whom a valid link signs in, where, and the id of the session it opens."""

    user_id: uuid.UUID
    org_id: uuid.UUID
    session_id: uuid.UUID


def issue_sign_in_link(settings: Settings, user_id: uuid.UUID, org_id: uuid.UUID) -> str:
    """A one-time token signing ``user_id`` into ``org_id``, for the page ``/sign-in/link``."""
    claims = {"sub": str(user_id), "org": str(org_id), "jti": str(uuid.uuid4())}
    return encode_token(settings.secret_key, _PURPOSE, claims, ttl=SIGN_IN_LINK_TTL)


def read_sign_in_link(settings: Settings, token: str) -> SignInLink:
    """The link ``token`` names; ``invalid_sign_in_link`` (also when expired) or
    ``sign_in_links_off`` (the hub is not in demo mode)."""
    if not settings.demo:
        raise Forbidden("sign_in_links_off", "Sign-in links work only on a demo hub.")
    try:
        claims = decode_token(settings.secret_key, _PURPOSE, token)
        return SignInLink(
            uuid.UUID(claims["sub"]), uuid.UUID(claims["org"]), uuid.UUID(claims["jti"])
        )
    except (InvalidToken, KeyError, ValueError, TypeError):
        raise Invalid(
            "invalid_sign_in_link",
            "This sign-in link is not valid or has expired: run the demo again for a new one.",
        ) from None


async def use_sign_in_link(
    session: AsyncSession,
    settings: Settings,
    token: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
) -> TokenPair:
    """Open the session the link names (method ``sign_in_link``) and commit; refused when the
    link was used (``sign_in_link_used``) or its user is no longer a member (``not_a_member``)."""
    link = read_sign_in_link(settings, token)
    with tenant(org_id=link.org_id, user_id=link.user_id):
        if await session.get(Membership, (link.org_id, link.user_id)) is None:
            raise Forbidden("not_a_member", "The link's account no longer belongs to its org.")
        if await session.get(UserSession, (link.org_id, link.session_id)) is not None:
            raise _used()
        try:
            return await start_session(
                session,
                settings,
                user_id=link.user_id,
                org_id=link.org_id,
                method=_PURPOSE,
                ip=ip,
                user_agent=user_agent,
                session_id=link.session_id,
            )
        except IntegrityError:  # used at the same moment by another request
            await session.rollback()
            raise _used() from None


def _used() -> Invalid:
    return Invalid("sign_in_link_used", "This sign-in link was used already: it works once.")
