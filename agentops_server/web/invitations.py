"""``/invitations/accept``: the page the invitation email links to.

Public, as ``POST /api/v1/invitations/accept`` is (the token in the link is the credential), and
calling the same service (:func:`~agentops_server.services.identity.invitation_acceptance.
accept_invitation`), throttled the same way. A signed-in person accepts as themselves (their
page session is the proof the service asks of an existing account); a new person chooses a
name and password, which makes the account and joins the invitation's org (no org of their
own); an existing account signed in nowhere gives its password (and second factor). Either way
the browser ends signed in to the org it joined.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import client_of
from agentops_server.auth.guards import PUBLIC
from agentops_server.backends.rate_limit import FailedAuthentications, Throttle
from agentops_server.refusals import Refused
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import parse_opaque_token
from agentops_server.services.identity import accounts, invitation_acceptance, invitations
from agentops_server.services.identity.invitation_acceptance import Acceptance
from agentops_server.settings import Settings
from agentops_server.web.forms import fields_of, validated
from agentops_server.web.pages import done
from agentops_server.web.sessions import session_cookie
from agentops_server.web.sign_in import HOME

__all__ = ["InvitationPages"]

PATH = "/invitations/accept"


class InvitationPages(Controller):
    """Accepting an invitation, signed in or as a new person."""

    @get(PATH, opt=PUBLIC)
    async def accept_form(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> Template:
        """Accept as the signed-in person, or make an account (or prove one) to accept."""
        return await _form(request, db_session, request.query_params.get("token", ""))

    @post(PATH, opt=PUBLIC)
    async def accept(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        auth_failures: NamedDependency[FailedAuthentications],
    ) -> Response[Any]:
        """Join the org; the browser is signed in there."""
        form = await fields_of(request)
        token = form.get("token", "")
        signed_in = _person(request)
        client = client_of(request)
        try:
            fields = {"token": token}
            if signed_in is None:
                fields |= {key: form[key] for key in ("name", "password") if form.get(key)}
                if code := form.get("code", "").strip():  # six digits, else a recovery code
                    fields["code" if len(code) == 6 and code.isdigit() else "recovery_code"] = code
            acceptance = validated(Acceptance, fields)
            if acceptance.password is not None:  # limited like sign-in, as the API's
                parsed = parse_opaque_token(invitations.TOKEN_KIND, token)
                await throttle.count("accept", parsed.row_id.hex if parsed else None)
            async with auth_failures.guard():
                accepted = await invitation_acceptance.accept_invitation(
                    db_session,
                    settings,
                    acceptance,
                    signed_in_as=signed_in.user_id if signed_in else None,
                    ip=client.ip,
                    user_agent=client.user_agent,
                    request_id=client.request_id,
                )
        except Refused as exc:
            await db_session.rollback()
            return await _form(request, db_session, token, exc, name=form.get("name", ""))
        redirect = done(HOME, "invitation_accepted")
        redirect.set_cookie(session_cookie(settings, accepted.tokens))
        return redirect


def _person(request: Request[Any, Any, Any]) -> Principal | None:
    """The signed-in person, if the page session proves one."""
    principal = request.scope.get("auth")
    return principal if isinstance(principal, Principal) and principal.user_id else None


async def _form(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    token: str,
    refusal: Refused | None = None,
    **context: Any,
) -> Template:
    person = _person(request)
    email = None
    if person is not None and person.user_id is not None:
        email = (await accounts.get_user(db_session, person.user_id)).email
    return Template(
        template_name="accept_invitation.html",
        context={"token": token, "signed_in_as": email, "error": refusal, **context},
        status_code=refusal.status if refusal else 200,
    )
