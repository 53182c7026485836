"""``/api/v1/auth``: sign-up, sign-in (with a second factor), sessions, passwords, two-factor.

Public routes (sign-up, sign-in, refresh, password reset) run as nobody and are limited
against brute force, per account and per client address (``AGENTOPS_RATE_LIMIT_LOGIN`` and
``AGENTOPS_RATE_LIMIT_LOGIN_IP``): past either, ``429 too_many_attempts`` with ``Retry-After``.
Every other route acts on the caller's own account (``account:self``, every role; never an API
key). Each refusal is a problem+json answer with a stable ``code``, and changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.api.v1.actors import client_ip, request_id
from agentops_server.auth.guards import PUBLIC, requires
from agentops_server.auth.permissions import Permission
from agentops_server.auth.principal import Principal
from agentops_server.auth.tokens import parse_opaque_token
from agentops_server.backends.mailer import Mailer
from agentops_server.backends.rate_limit import RateLimiter
from agentops_server.db.tenancy import TenantSession
from agentops_server.errors import Problem
from agentops_server.services import accounts, audit, mfa, sessions
from agentops_server.services.accounts import (
    AccountError,
    AccountView,
    MfaChallenge,
    SignedUp,
    UserProfile,
)
from agentops_server.services.mfa import MfaError, TotpEnrolment
from agentops_server.services.sessions import ActiveSession, SessionError, TokenPair
from agentops_server.settings import Settings

__all__ = ["AuthController"]

logger = logging.getLogger("agentops_server")

MAX_BODY_BYTES = 64 * 1024
"""Every body here is a few short fields."""

Email = Annotated[str, msgspec.Meta(max_length=320, description="An email address.")]
Password = Annotated[str, msgspec.Meta(max_length=1024)]
Name = Annotated[str, msgspec.Meta(max_length=200)]
OrgRef = Annotated[str, msgspec.Meta(max_length=64, description="An org's id or slug.")]
Token = Annotated[str, msgspec.Meta(max_length=1024)]
Code = Annotated[str, msgspec.Meta(max_length=64)]


class SignupForm(msgspec.Struct, forbid_unknown_fields=True):
    """A new org and its owner."""

    email: Email
    password: Password
    org_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    name: Name = ""
    org_slug: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    """Defaults to one made from ``org_name``."""


class LoginForm(msgspec.Struct, forbid_unknown_fields=True):
    """Email and password; ``org`` (id or slug) picks the org, by default the oldest one."""

    email: Email
    password: Password
    org: OrgRef | None = None


class MfaLoginForm(msgspec.Struct, forbid_unknown_fields=True):
    """The ``mfa_token`` of the password step, and one code: a TOTP ``code`` or a
    ``recovery_code``."""

    mfa_token: Token
    code: Code | None = None
    recovery_code: Code | None = None


class RefreshForm(msgspec.Struct, forbid_unknown_fields=True):
    """A refresh token, used once."""

    refresh_token: Token


class LogoutForm(msgspec.Struct, forbid_unknown_fields=True):
    """``everywhere``: end every session of the user in every org, not only this one."""

    everywhere: bool = False


class ProfileForm(msgspec.Struct, forbid_unknown_fields=True):
    """The user's display name."""

    name: Name


class SwitchOrgForm(msgspec.Struct, forbid_unknown_fields=True):
    """The org to sign into (id or slug)."""

    org: OrgRef


class PasswordChangeForm(msgspec.Struct, forbid_unknown_fields=True):
    """The current password and the new one."""

    current_password: Password
    new_password: Password


class ForgotForm(msgspec.Struct, forbid_unknown_fields=True):
    """The email of the account to reset."""

    email: Email


class ResetForm(msgspec.Struct, forbid_unknown_fields=True):
    """The emailed reset token and the new password."""

    token: Token
    new_password: Password


class CodeForm(msgspec.Struct, forbid_unknown_fields=True):
    """A code from the authenticator app."""

    code: Code


class PasswordForm(msgspec.Struct, forbid_unknown_fields=True):
    """The user's password, confirming a sensitive change."""

    password: Password


@dataclasses.dataclass(frozen=True, slots=True)
class PasswordChanged:
    """How many sessions the change ended."""

    sessions_revoked: int


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryCodes:
    """Single-use recovery codes, shown this once: keep them somewhere safe."""

    recovery_codes: list[str]


@dataclasses.dataclass(frozen=True, slots=True)
class SessionList:
    """The user's live sessions in this org, newest first."""

    items: list[ActiveSession]


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """A request taken without saying more (the password-reset request)."""

    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class ProblemBody:
    """An RFC 9457 problem: ``code`` is stable, ``detail`` says what to do."""

    type: str
    title: str
    status: int
    detail: str
    code: str


_STATUS = {
    "invalid_email": 400,
    "weak_password": 400,
    "invalid_org_name": 400,
    "invalid_slug": 400,
    "email_taken": 409,
    "slug_taken": 409,
    "invalid_credentials": 401,
    "no_membership": 403,
    "not_a_member": 403,
    "invalid_mfa_token": 401,
    "mfa_token_expired": 401,
    "invalid_mfa_code": 401,
    "mfa_code_reused": 401,
    "invalid_refresh_token": 401,
    "refresh_token_reused": 401,
    "session_revoked": 401,
    "session_expired": 401,
    "invalid_password": 403,
    "invalid_reset_token": 400,
    "reset_token_used": 400,
    "reset_token_expired": 400,
    "mfa_already_enabled": 409,
    "mfa_not_enabled": 409,
    "mfa_enrolment_not_started": 409,
    "too_many_attempts": 429,
}
"""HTTP status of each refusal code of the account services."""


def _problems(status: dict[str, int] | None = None, **codes: str) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the refusals a route may answer, ``code="when"``; ``status``
    overrides the status of a code on this route."""
    by_status: dict[int, list[str]] = {}
    for code, when in codes.items():
        answer = (status or {}).get(code) or _STATUS.get(code, 400)
        by_status.setdefault(answer, []).append(f"`{code}`: {when}")
    return {
        answer: ResponseSpec(
            ProblemBody,
            description="; ".join(lines),
            media_type="application/problem+json",
            generate_examples=False,
        )
        for answer, lines in by_status.items()
    }


_THROTTLED = "too many attempts for this account or from this address; see Retry-After"
_ANYONE: list[dict[str, list[str]]] = [{}]
"""OpenAPI security of a public route: no credential needed."""


class AuthController(Controller):
    """Accounts and sessions."""

    path = "/auth"
    tags = ("auth",)
    request_max_body_size = MAX_BODY_BYTES

    # -- sign-up and sign-in (public) ----------------------------------------------------------

    @post(
        "/signup",
        opt=PUBLIC,
        security=_ANYONE,
        status_code=201,
        summary="Sign up: a new org, its owner and a session",
        responses=_problems(
            invalid_email="the email is not an address",
            weak_password="the password is too short, repetitive or easy; the detail says why",
            invalid_org_name="the org name is blank",
            invalid_slug="org_slug is not lower-case letters, digits and inner hyphens",
            email_taken="an account with this email exists",
            slug_taken="an org with this slug exists; send another org_slug",
            too_many_attempts=_THROTTLED,
        ),
    )
    async def signup(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        data: SignupForm,
    ) -> SignedUp:
        """Make an org and its first user (its owner), signed in. Records ``org.created`` and
        ``member.added`` in the new org's audit log."""
        await _count_attempt(request, "signup", None)
        try:
            return await accounts.signup(
                db_session,
                _settings(request),
                email=data.email,
                password=data.password,
                name=data.name,
                org_name=data.org_name,
                org_slug=data.org_slug,
                client=_client(request),
            )
        except AccountError as exc:
            raise _problem(exc) from exc

    @post(
        "/login",
        opt=PUBLIC,
        security=_ANYONE,
        status_code=200,
        summary="Sign in with email and password",
        responses=_problems(
            invalid_credentials="the email or password is wrong (the same for an unknown email)",
            no_membership="the user belongs to no org",
            not_a_member="the user is not a member of the org asked for",
            too_many_attempts=_THROTTLED,
        ),
    )
    async def login(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        data: LoginForm,
    ) -> TokenPair | MfaChallenge:
        """Tokens for a session in ``org`` (by default the user's oldest org). A user with a
        second factor gets ``{"mfa_required": true, "mfa_token": …}`` instead: send it with a
        code to ``POST /auth/login/mfa`` within five minutes."""
        account = _account_key(data.email)
        await _count_attempt(request, "login", account)
        try:
            answer = await accounts.sign_in(
                db_session,
                _settings(request),
                email=data.email,
                password=data.password,
                org=data.org,
                client=_client(request),
            )
        except AccountError as exc:
            raise _problem(exc) from exc
        await _forget_attempts(request, "login", account)
        return answer

    @post(
        "/login/mfa",
        opt=PUBLIC,
        security=_ANYONE,
        status_code=200,
        summary="Finish signing in with a second-factor code",
        responses=_problems(
            mfa_code_required="send exactly one of code and recovery_code",
            invalid_mfa_token="the mfa_token is malformed, tampered with or for something else",
            mfa_token_expired="more than five minutes since the password step",
            invalid_mfa_code="the code or recovery code is wrong (or the recovery code is used)",
            mfa_code_reused="this code was already used; wait for the next one",
            too_many_attempts=_THROTTLED,
        ),
    )
    async def login_mfa(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        data: MfaLoginForm,
    ) -> TokenPair:
        """Trade the ``mfa_token`` of ``POST /auth/login`` and one code for tokens."""
        if (data.code is None) == (data.recovery_code is None):
            raise Problem(400, "mfa_code_required", "Send exactly one of code and recovery_code.")
        settings = _settings(request)
        try:
            pending = accounts.read_mfa_token(settings, data.mfa_token)
        except AccountError as exc:
            raise _problem(exc) from exc
        account = pending.user_id.hex
        await _count_attempt(request, "mfa", account)
        try:
            tokens = await accounts.finish_sign_in(
                db_session,
                settings,
                pending,
                code=data.code,
                recovery_code=data.recovery_code,
                client=_client(request),
            )
        except (AccountError, MfaError) as exc:
            raise _problem(exc) from exc
        await _forget_attempts(request, "mfa", account)
        return tokens

    @post(
        "/refresh",
        opt=PUBLIC,
        security=_ANYONE,
        status_code=200,
        summary="Trade a refresh token for a new pair",
        responses=_problems(
            {"not_a_member": 401},
            invalid_refresh_token="not a refresh token of this hub",
            refresh_token_reused="the token was already used: its session is now revoked",
            session_revoked="the session was signed out or revoked",
            session_expired="the session is older than AGENTOPS_REFRESH_TOKEN_TTL",
            not_a_member="the user no longer belongs to the session's org",
        ),
    )
    async def refresh(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        data: RefreshForm,
    ) -> TokenPair:
        """A new access token and refresh token; the one sent is used up. Sending a used one
        again revokes the whole session: refresh one request at a time."""
        try:
            return await sessions.rotate_refresh_token(
                db_session,
                _settings(request),
                data.refresh_token,
                actor=audit.Actor("system", None, client_ip(request), request_id(request)),
            )
        except SessionError as exc:
            raise _problem(exc, not_a_member=401) from exc

    # -- password reset (public) ----------------------------------------------------------------

    @post(
        "/password/forgot",
        opt=PUBLIC,
        security=_ANYONE,
        status_code=HTTP_202_ACCEPTED,
        summary="Ask for a password-reset email",
        responses=_problems(too_many_attempts=_THROTTLED),
    )
    async def forgot_password(
        self, request: Request[Any, Any, State], data: ForgotForm
    ) -> Response[Accepted]:
        """Always 202, whether or not an account has this email (the answer reveals nothing).
        When one does, it gets a link with a single-use token valid for one hour."""
        await _count_attempt(request, "reset-request", _account_key(data.email))
        state = request.app.state
        return Response(
            Accepted("If an account has this email, a reset link is on its way."),
            status_code=HTTP_202_ACCEPTED,
            # After the answer, so its timing does not tell whether the account exists.
            background=BackgroundTask(
                _send_reset_link, state.engine, state.settings, state.mailer, data.email
            ),
        )

    @post(
        "/password/reset",
        opt=PUBLIC,
        security=_ANYONE,
        status_code=200,
        summary="Set a new password with an emailed token",
        responses=_problems(
            invalid_reset_token="not a reset token of this hub",
            reset_token_used="the token was used, or a newer reset replaced it",
            reset_token_expired="the token is more than an hour old",
            weak_password="the new password is too weak; the detail says why",
            too_many_attempts=_THROTTLED,
        ),
    )
    async def reset_password(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        data: ResetForm,
    ) -> PasswordChanged:
        """Set the password; every session of the user, in every org, ends."""
        parsed = parse_opaque_token(accounts.RESET_TOKEN_KIND, data.token)
        await _count_attempt(request, "reset", parsed.owner_id.hex if parsed else None)
        try:
            ended = await accounts.reset_password(
                db_session, data.token, data.new_password, client=_client(request)
            )
        except AccountError as exc:
            raise _problem(exc) from exc
        return PasswordChanged(ended)

    # -- the signed-in user ---------------------------------------------------------------------

    @post(
        "/logout",
        guards=[requires(Permission.ACCOUNT)],
        status_code=204,
        summary="Sign out",
        responses=_problems(no_session="the credential is not a hub session"),
    )
    async def logout(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: LogoutForm | None = None,
    ) -> None:
        """End this session (its access and refresh tokens stop working at once), or with
        ``everywhere`` every session of the user in every org."""
        principal = request.auth
        user_id, session_id = _user_of(principal), _session_of(principal)
        if data is not None and data.everywhere:
            await sessions.revoke_everywhere(db_session, user_id, reason="logout_everywhere")
            return
        await sessions.revoke_session(
            db_session, principal.org_id, session_id, reason="logout", user_id=user_id
        )
        await db_session.commit()

    @get("/me", guards=[requires(Permission.ACCOUNT)], summary="Who am I")
    async def me(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
    ) -> AccountView:
        """The user, this session's org and role, and every org the user belongs to."""
        principal = request.auth
        return await accounts.account(
            db_session, _user_of(principal), principal.org_id, principal.session_id
        )

    @patch("/me", guards=[requires(Permission.ACCOUNT)], summary="Change my profile")
    async def update_me(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: ProfileForm,
    ) -> UserProfile:
        """Change the display name."""
        return await accounts.rename(db_session, _user_of(request.auth), data.name)

    @post(
        "/switch-org",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Sign into another of my orgs",
        responses=_problems(not_a_member="the user does not belong to that org"),
    )
    async def switch_org(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: SwitchOrgForm,
    ) -> TokenPair:
        """Tokens of a new session in ``org``; this session stays open."""
        try:
            return await accounts.switch_org(
                db_session,
                _settings(request),
                _user_of(request.auth),
                data.org,
                client=_client(request),
            )
        except AccountError as exc:
            raise _problem(exc) from exc

    @get("/sessions", guards=[requires(Permission.ACCOUNT)], summary="My sessions in this org")
    async def list_sessions(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
    ) -> SessionList:
        """The user's sessions in this org that have not ended, newest first."""
        principal = request.auth
        found = await sessions.list_sessions(
            db_session, principal.org_id, _user_of(principal), current=principal.session_id
        )
        return SessionList(found)

    @delete(
        "/sessions/{session_id:uuid}",
        guards=[requires(Permission.ACCOUNT)],
        summary="End one of my sessions",
        responses={
            404: ResponseSpec(
                ProblemBody,
                description="`session_not_found`: no live session of yours in this org has it",
                media_type="application/problem+json",
                generate_examples=False,
            )
        },
    )
    async def revoke_session(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        session_id: Annotated[uuid.UUID, Parameter(description="The session's id.")],
    ) -> None:
        """Revoke one of the user's sessions in this org (records ``session.revoked``)."""
        principal = request.auth
        user_id = _user_of(principal)
        ended = await sessions.revoke_session(
            db_session, principal.org_id, session_id, reason="revoked_by_user", user_id=user_id
        )
        if not ended:
            raise Problem(
                404, "session_not_found", f"You have no live session {session_id} in this org."
            )
        await audit.record(
            db_session,
            principal.org_id,
            _client(request).actor(user_id),
            "session.revoked",
            target_type="session",
            target_id=session_id,
            after={"reason": "revoked_by_user"},
        )
        await db_session.commit()

    @post(
        "/password/change",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Change my password",
        responses=_problems(
            invalid_password="the current password is wrong",
            weak_password="the new password is too weak; the detail says why",
            too_many_attempts=_THROTTLED,
        ),
    )
    async def change_password(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: PasswordChangeForm,
    ) -> PasswordChanged:
        """Replace the password; every other session of the user, in every org, ends (this
        one stays). Records ``user.password_changed``."""
        principal = request.auth
        user_id = _user_of(principal)
        await _count_attempt(request, "password", user_id.hex)
        try:
            ended = await accounts.change_password(
                db_session,
                user_id=user_id,
                org_id=principal.org_id,
                session_id=principal.session_id,
                current=data.current_password,
                new=data.new_password,
                client=_client(request),
            )
        except AccountError as exc:
            raise _problem(exc) from exc
        await _forget_attempts(request, "password", user_id.hex)
        return PasswordChanged(ended)

    # -- two-factor -----------------------------------------------------------------------------

    @post(
        "/mfa/totp",
        guards=[requires(Permission.ACCOUNT)],
        status_code=201,
        summary="Start enrolling an authenticator app",
        responses=_problems(mfa_already_enabled="two-factor is on; disable it first"),
    )
    async def start_totp(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
    ) -> TotpEnrolment:
        """A new TOTP secret and its ``otpauth://`` URI (show it as a QR code). Nothing changes
        at sign-in until ``POST /auth/mfa/totp/confirm``."""
        user = await accounts.get_user(db_session, _user_of(request.auth))
        try:
            return await mfa.start_totp(db_session, _settings(request), user)
        except MfaError as exc:
            raise _problem(exc) from exc

    @post(
        "/mfa/totp/confirm",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Confirm the authenticator app with a first code",
        responses=_problems(
            {"invalid_mfa_code": 400},
            invalid_mfa_code="the code is wrong",
            mfa_enrolment_not_started="no pending enrolment: POST /auth/mfa/totp first",
            mfa_already_enabled="two-factor is already on",
        ),
    )
    async def confirm_totp(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: CodeForm,
    ) -> RecoveryCodes:
        """Turn two-factor on; ten single-use recovery codes, shown this once. Records
        ``user.mfa_enabled``."""
        principal = request.auth
        user_id = _user_of(principal)
        try:
            codes = await mfa.confirm_totp(
                db_session,
                _settings(request),
                user_id,
                data.code,
                audit_in=principal.org_id,
                actor=_client(request).actor(user_id),
            )
        except MfaError as exc:
            raise _problem(exc, invalid_mfa_code=400) from exc
        return RecoveryCodes(codes)

    @delete(
        "/mfa/totp",
        guards=[requires(Permission.ACCOUNT)],
        summary="Turn the authenticator app off",
        responses=_problems(
            invalid_password="the password is wrong",
            mfa_not_enabled="two-factor is not on",
            too_many_attempts=_THROTTLED,
        ),
    )
    async def disable_totp(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: PasswordForm,
    ) -> None:
        """Turn two-factor off (the password confirms it); recovery codes go with it. Records
        ``user.mfa_disabled``."""
        principal = request.auth
        user_id = _user_of(principal)
        await _count_attempt(request, "password", user_id.hex)
        user = await accounts.get_user(db_session, user_id)
        try:
            await mfa.disable_totp(
                db_session,
                user,
                data.password,
                audit_in=principal.org_id,
                actor=_client(request).actor(user_id),
            )
        except MfaError as exc:
            raise _problem(exc) from exc
        await _forget_attempts(request, "password", user_id.hex)

    @post(
        "/mfa/recovery-codes",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Replace my recovery codes",
        responses=_problems(
            invalid_password="the password is wrong",
            mfa_not_enabled="two-factor is not on",
            too_many_attempts=_THROTTLED,
        ),
    )
    async def regenerate_recovery_codes(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: PasswordForm,
    ) -> RecoveryCodes:
        """Ten new recovery codes (the password confirms it); the old ones stop working."""
        principal = request.auth
        user_id = _user_of(principal)
        await _count_attempt(request, "password", user_id.hex)
        user = await accounts.get_user(db_session, user_id)
        try:
            codes = await mfa.regenerate_recovery_codes(
                db_session,
                user,
                data.password,
                audit_in=principal.org_id,
                actor=_client(request).actor(user_id),
            )
        except MfaError as exc:
            raise _problem(exc) from exc
        await _forget_attempts(request, "password", user_id.hex)
        return RecoveryCodes(codes)


# -- helpers ---------------------------------------------------------------------------------------


def _settings(request: Request[Any, Any, State]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _client(request: Request[Any, Any, State]) -> accounts.Client:
    return accounts.Client(
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=request_id(request),
    )


def _user_of(principal: Principal) -> uuid.UUID:
    # account:self is a person's permission: no API key holds it, so there is always a user.
    assert principal.user_id is not None
    return principal.user_id


def _session_of(principal: Principal) -> uuid.UUID:
    if principal.session_id is None:
        raise Problem(
            400,
            "no_session",
            "This credential is not a hub session (an external identity's token): "
            "sign out with the identity provider.",
        )
    return principal.session_id


def _account_key(email: str) -> str:
    return email.strip().lower()[:320]


def _problem(exc: AccountError | MfaError | SessionError, **status: int) -> Problem:
    """The problem answer of a service refusal; ``status`` overrides the status of a code."""
    return Problem(status.get(exc.code) or _STATUS.get(exc.code, 400), exc.code, exc.detail)


async def _count_attempt(
    request: Request[Any, Any, State], action: str, account: str | None
) -> None:
    """Count an attempt at ``action`` from this address and, when known, on ``account``;
    429 ``too_many_attempts`` past either limit."""
    limiter: RateLimiter = request.app.state.rate_limiter
    settings = _settings(request)
    limits = [(f"auth:{action}:ip:{client_ip(request) or 'unknown'}", settings.rate_limit_login_ip)]
    if account:
        limits.append((f"auth:{action}:account:{account}", settings.rate_limit_login))
    for key, limit in limits:
        result = await limiter.hit(key, limit)
        if not result.allowed:
            raise Problem(
                429,
                "too_many_attempts",
                f"Too many attempts; try again in {result.retry_after} s.",
                headers={**result.headers(), "Retry-After": str(result.retry_after)},
            )


async def _forget_attempts(request: Request[Any, Any, State], action: str, account: str) -> None:
    """A success: the account's count starts over (the address's does not)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.clear(f"auth:{action}:account:{account}", _settings(request).rate_limit_login)


async def _send_reset_link(
    engine: AsyncEngine, settings: Settings, mailer: Mailer, email: str
) -> None:
    """Runs after the answer was sent: a failure can only be logged."""
    try:
        async with AsyncSession(
            engine, sync_session_class=TenantSession, expire_on_commit=False
        ) as session:
            await accounts.request_password_reset(session, settings, mailer, email)
    except Exception:
        logger.exception("password reset: the email could not be sent")
