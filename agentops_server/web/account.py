"""The pages of one's own account: a forgotten password, and ``/account/security``.

``/forgot-password`` and ``/reset-password`` are public and do what ``POST
/api/v1/auth/password/forgot`` and ``/reset`` do (the same answer whether or not the email has
an account; the emailed link leads to ``/reset-password?token=...``). ``/account/security``
(``account:self``) enrols and disables the authenticator app (``/api/v1/auth/mfa``), lists and
ends the person's sessions (``/api/v1/auth/sessions``) and changes the password
(``/api/v1/auth/password/change``), calling the same services, throttled the same way.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import segno
from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import PathParameter
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.api.v1.actors import actor_of, client_of, user_id_of
from agentops_server.api.v1.identity.passwords import send_reset_link
from agentops_server.auth.guards import PUBLIC, requires
from agentops_server.backends.mailer import Mailer
from agentops_server.backends.rate_limit import FailedAuthentications, Throttle, account_key
from agentops_server.refusals import Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import parse_opaque_token
from agentops_server.services.identity import accounts, mfa, password_changes, sessions
from agentops_server.services.identity.mfa import TotpEnrolment
from agentops_server.settings import Settings
from agentops_server.web.forms import fields_of
from agentops_server.web.pages import done, page

__all__ = ["AccountPages", "qr_svg"]

SECURITY = "/account/security"
RESET_REQUESTED = "If an account has this email, a reset link is on its way."
"""The answer to a reset request, whether or not an account has the email (as the API's)."""


class AccountPages(Controller):
    """Forgotten passwords, and the signed-in person's second factor, sessions and password."""

    @get("/forgot-password", opt=PUBLIC)
    async def forgot_password_form(self) -> Template:
        """Ask for a reset link."""
        return _public("forgot_password.html")

    @post("/forgot-password", opt=PUBLIC)
    async def forgot_password(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        engine: NamedDependency[AsyncEngine],
        mailer: NamedDependency[Mailer],
        throttle: NamedDependency[Throttle],
    ) -> Response[Any]:
        """The same answer for every email; the link goes out after it (its timing tells
        nothing), as the API's."""
        email = (await fields_of(request)).get("email", "").strip()
        try:
            await throttle.count("reset-request", account_key(email))
        except Refused as exc:
            return _public("forgot_password.html", exc, email=email)
        answer = _public("forgot_password.html", sent=RESET_REQUESTED)
        if email:
            answer.background = BackgroundTask(send_reset_link, engine, settings, mailer, email)
        return answer

    @get("/reset-password", opt=PUBLIC)
    async def reset_password_form(self, request: Request[Any, Any, Any]) -> Template:
        """Choose a new password (the emailed link's page)."""
        return _public("reset_password.html", token=request.query_params.get("token", ""))

    @post("/reset-password", opt=PUBLIC)
    async def reset_password(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        throttle: NamedDependency[Throttle],
        auth_failures: NamedDependency[FailedAuthentications],
    ) -> Response[Any]:
        """Set the new password; every session of the person ends, and they sign in again."""
        form = await fields_of(request)
        token = form.get("token", "")
        try:
            parsed = parse_opaque_token(password_changes.RESET_TOKEN_KIND, token)
            await throttle.count("reset", parsed.owner_id.hex if parsed else None)
            async with auth_failures.guard():
                await password_changes.reset_password(
                    db_session, token, form.get("new_password", ""), client=client_of(request)
                )
        except Refused as exc:
            return _public("reset_password.html", exc, token=token)
        return Redirect("/sign-in?done=password_reset", status_code=303)

    @get(SECURITY, guards=[requires(Permission.ACCOUNT)])
    async def security_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The second factor, the sessions and the password form."""
        return await _security(request, db_session)

    @post(SECURITY + "/totp", guards=[requires(Permission.ACCOUNT)])
    async def start_totp(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Response[Any]:
        """A new secret to enter in the authenticator app (nothing changes until confirmed)."""
        try:
            user = await accounts.get_user(db_session, user_id_of(request.auth))
            enrolment = await mfa.start_totp(db_session, settings, user)
        except Refused as exc:
            return await _security(request, db_session, exc)
        return await _security(request, db_session, enrolment=enrolment)

    @post(SECURITY + "/totp/confirm", guards=[requires(Permission.ACCOUNT)])
    async def confirm_totp(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> Response[Any]:
        """Turn two-factor on with a first code; the recovery codes, shown this once."""
        principal = request.auth
        try:
            codes = await mfa.confirm_totp(
                db_session,
                settings,
                user_id_of(principal),
                (await fields_of(request)).get("code", "").strip(),
                audit_in=principal.org_id,
                actor=actor_of(request),
            )
        except Refused as exc:
            return await _security(request, db_session, exc)
        return await _security(request, db_session, recovery_codes=codes)

    @post(SECURITY + "/totp/disable", guards=[requires(Permission.ACCOUNT)])
    async def disable_totp(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        throttle: NamedDependency[Throttle],
    ) -> Response[Any]:
        """Turn two-factor off; the password confirms it."""
        principal = request.auth
        user_id = user_id_of(principal)
        try:
            async with throttle.attempt("password", user_id.hex):
                await mfa.disable_totp(
                    db_session,
                    await accounts.get_user(db_session, user_id),
                    (await fields_of(request)).get("password", ""),
                    audit_in=principal.org_id,
                    actor=actor_of(request),
                )
        except Refused as exc:
            return await _security(request, db_session, exc)
        return done(SECURITY, "mfa_disabled")

    @post(SECURITY + "/password", guards=[requires(Permission.ACCOUNT)])
    async def change_password(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        throttle: NamedDependency[Throttle],
    ) -> Response[Any]:
        """Replace the password; the person's other sessions end, this one stays."""
        principal = request.auth
        user_id = user_id_of(principal)
        form = await fields_of(request)
        try:
            async with throttle.attempt("password", user_id.hex):
                await password_changes.change_password(
                    db_session,
                    user_id=user_id,
                    org_id=principal.org_id,
                    session_id=principal.session_id,
                    current=form.get("current_password", ""),
                    new=form.get("new_password", ""),
                    client=client_of(request),
                )
        except Refused as exc:
            return await _security(request, db_session, exc)
        return done(SECURITY, "password_changed")

    @post(SECURITY + "/sessions/{session_id:uuid}/revoke", guards=[requires(Permission.ACCOUNT)])
    async def revoke_session(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        session_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """End one of the person's sessions in this org (this one too: then sign in again)."""
        principal = request.auth
        try:
            await sessions.end_own_session(
                db_session,
                principal.org_id,
                user_id_of(principal),
                session_id,
                actor=actor_of(request),
            )
        except Refused as exc:
            return await _security(request, db_session, exc)
        return done(SECURITY, "session_revoked")


def qr_svg(uri: str) -> str:
    """``uri`` as a QR code: an inline SVG element (no script, no image request, so the CSP
    allows it), black on white in either theme, as scanners want."""
    svg: str = segno.make(uri, error="m").svg_inline(
        scale=4, dark="#000", light="#fff", title="QR code of the authenticator secret"
    )
    return svg


async def _security(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
    *,
    enrolment: TotpEnrolment | None = None,
    recovery_codes: list[str] | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    principal = request.auth
    user_id = user_id_of(principal)
    response = await page(
        request,
        db_session,
        "account_security.html",
        mfa_enabled=bool(await mfa.enabled_kinds(db_session, user_id)),
        enrolment=enrolment,
        qr_code=qr_svg(enrolment.otpauth_uri) if enrolment else None,
        recovery_codes=recovery_codes,
        sessions=await sessions.list_sessions(
            db_session, principal.org_id, user_id, current=principal.session_id
        ),
        error=refusal,
    )
    response.status_code = refusal.status if refusal else 200
    return response


def _public(template: str, refusal: Refused | None = None, **context: Any) -> Template:
    """A public page of this module, with the refusal of the last attempt if any."""
    return Template(
        template_name=template,
        context={"error": refusal, **context},
        status_code=refusal.status if refusal else 200,
    )
