"""``/api/v1/auth``: sign-up, sign-in (with a second factor), sessions, passwords, two-factor.

Public routes (sign-up, sign-in, refresh, password reset) run as nobody and are limited
against brute force, per account and per client address (``AGENTOPS_RATE_LIMIT_LOGIN`` and
``AGENTOPS_RATE_LIMIT_LOGIN_IP``): past either, ``429 too_many_attempts`` with ``Retry-After``.
Every other route acts on the caller's own account (``account:self``, every role; never an API
key), signed in with a hub session or a Supabase token (which is no hub session: ``GET /me``
shows ``session_id`` null, and ``POST /logout`` answers ``400 no_session``). Each refusal is a
problem+json answer with a stable ``code``, and changes nothing.
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
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_202_ACCEPTED
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.api.problems import problems
from agentops_server.api.v1.actors import actor_of, client_ip, client_of, request_id, user_id_of
from agentops_server.api.v1.openapi import ANYONE
from agentops_server.auth.guards import PUBLIC, requires
from agentops_server.backends.mailer import Mailer
from agentops_server.backends.rate_limit import FailedAuthentications, Throttle
from agentops_server.db.engine import open_session
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import parse_opaque_token
from agentops_server.services import audit
from agentops_server.services.identity import accounts, mfa, sessions
from agentops_server.services.identity.accounts import (
    AccountView,
    MfaChallenge,
    SignedUp,
    UserProfile,
)
from agentops_server.services.identity.mfa import TotpEnrolment
from agentops_server.services.identity.sessions import ActiveSession, TokenPair
from agentops_server.settings import Settings
from agentops_server.values import Name, Text

__all__ = ["AuthController"]

logger = logging.getLogger("agentops_server")

MAX_BODY_BYTES = 64 * 1024
"""Every body here is a few short fields."""


class SignupForm(msgspec.Struct, forbid_unknown_fields=True):
    """A new org and its owner."""

    email: Text
    password: Text
    org_name: Name
    name: Name = Name("")
    org_slug: Text | None = None
    """Defaults to one made from ``org_name``."""


class LoginForm(msgspec.Struct, forbid_unknown_fields=True):
    """Email and password; ``org`` (id or slug) picks the org, by default the oldest one."""

    email: Text
    password: Text
    org: Text | None = None


class MfaLoginForm(msgspec.Struct, forbid_unknown_fields=True):
    """The ``mfa_token`` of the password step, and one code: a TOTP ``code`` or a
    ``recovery_code``."""

    mfa_token: Text
    code: Text | None = None
    recovery_code: Text | None = None


class RefreshForm(msgspec.Struct, forbid_unknown_fields=True):
    """A refresh token, used once."""

    refresh_token: Text


class LogoutForm(msgspec.Struct, forbid_unknown_fields=True):
    """``everywhere``: end every session of the user in every org, not only this one."""

    everywhere: bool = False


class ProfileForm(msgspec.Struct, forbid_unknown_fields=True):
    """The user's display name."""

    name: Name


class SwitchOrgForm(msgspec.Struct, forbid_unknown_fields=True):
    """The org to sign into (id or slug)."""

    org: Text


class PasswordChangeForm(msgspec.Struct, forbid_unknown_fields=True):
    """The current password and the new one."""

    current_password: Text
    new_password: Text


class ForgotForm(msgspec.Struct, forbid_unknown_fields=True):
    """The email of the account to reset."""

    email: Text


class ResetForm(msgspec.Struct, forbid_unknown_fields=True):
    """The emailed reset token and the new password."""

    token: Text
    new_password: Text


class CodeForm(msgspec.Struct, forbid_unknown_fields=True):
    """A code from the authenticator app."""

    code: Text


class PasswordForm(msgspec.Struct, forbid_unknown_fields=True):
    """The user's password, confirming a sensitive change."""

    password: Text


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


_THROTTLED = "too many attempts for this account or from this address; see Retry-After"
_FAILURES = "too many credentials that were not authentic came from this address; see Retry-After"


class AuthController(Controller):
    """Accounts and sessions."""

    path = "/auth"
    tags = ("auth",)
    request_max_body_size = MAX_BODY_BYTES

    # -- sign-up and sign-in (public) ----------------------------------------------------------

    @post(
        "/signup",
        opt=PUBLIC,
        security=ANYONE,
        status_code=201,
        summary="Sign up: a new org, its owner and a session",
        responses=problems(
            Invalid("invalid_email", "the email is not an address"),
            Invalid(
                "weak_password",
                "the password is too short, repetitive or easy; the detail says why",
            ),
            Invalid("invalid_org_name", "the org name is blank"),
            Invalid("invalid_slug", "org_slug is not lower-case letters, digits and inner hyphens"),
            Conflict("email_taken", "an account with this email exists"),
            Conflict("slug_taken", "an org with this slug exists; send another org_slug"),
            Forbidden(
                "signup_closed", "AGENTOPS_SIGNUP_OPEN is false: accounts come by invitation only"
            ),
            RateLimited("too_many_attempts", _THROTTLED),
        ),
    )
    async def signup(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        data: JSONBody[SignupForm],
    ) -> SignedUp:
        """Make an org and its first user (its owner), signed in. Records ``org.created`` and
        ``member.added`` in the new org's audit log. A taken email answers 409 ``email_taken``
        (docs/decisions/0016)."""
        if not settings.signup_open:
            raise Forbidden(
                "signup_closed",
                "This hub makes accounts by invitation only: ask an admin of your org to invite "
                "you.",
            )
        await throttle.count("signup")
        return await accounts.signup(
            db_session,
            settings,
            email=data.email,
            password=data.password,
            name=data.name,
            org_name=data.org_name,
            org_slug=data.org_slug,
            client=client_of(request),
        )

    @post(
        "/login",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Sign in with email and password",
        responses=problems(
            Unauthenticated(
                "invalid_credentials",
                "the email or password is wrong (the same for an unknown email)",
            ),
            Forbidden("no_membership", "the user belongs to no org"),
            Forbidden("not_a_member", "the user is not a member of the org asked for"),
            RateLimited("too_many_attempts", _THROTTLED),
        ),
    )
    async def login(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        data: JSONBody[LoginForm],
    ) -> TokenPair | MfaChallenge:
        """Tokens for a session in ``org`` (by default the user's oldest org). A user with a
        second factor gets ``{"mfa_required": true, "mfa_token": …}`` instead: send it with a
        code to ``POST /auth/login/mfa`` within five minutes."""
        async with throttle.attempt("login", _account_key(data.email)):
            return await accounts.sign_in(
                db_session,
                settings,
                email=data.email,
                password=data.password,
                org=data.org,
                client=client_of(request),
            )

    @post(
        "/login/mfa",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Finish signing in with a second-factor code",
        responses=problems(
            Invalid("mfa_code_required", "send exactly one of code and recovery_code"),
            Unauthenticated(
                "invalid_mfa_token",
                "the mfa_token is malformed, tampered with or for something else",
            ),
            Unauthenticated("mfa_token_expired", "more than five minutes since the password step"),
            Unauthenticated(
                "invalid_mfa_code",
                "the code or recovery code is wrong (or the recovery code is used)",
            ),
            Unauthenticated("mfa_code_reused", "this code was already used; wait for the next one"),
            RateLimited("too_many_attempts", _THROTTLED),
        ),
    )
    async def login_mfa(
        self,
        *,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        throttle: NamedDependency[Throttle],
        auth_failures: NamedDependency[FailedAuthentications],
        data: JSONBody[MfaLoginForm],
    ) -> TokenPair:
        """Trade the ``mfa_token`` of ``POST /auth/login`` and one code for tokens."""
        if (data.code is None) == (data.recovery_code is None):
            raise Invalid("mfa_code_required", "Send exactly one of code and recovery_code.")
        async with auth_failures.guard():
            pending = accounts.read_mfa_token(settings, data.mfa_token)
        async with throttle.attempt("mfa", pending.user_id.hex):
            return await accounts.finish_sign_in(
                db_session,
                settings,
                pending,
                code=data.code,
                recovery_code=data.recovery_code,
                client=client_of(request),
            )

    @post(
        "/refresh",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Trade a refresh token for a new pair",
        responses=problems(
            Unauthenticated("invalid_refresh_token", "not a refresh token of this hub"),
            Unauthenticated(
                "refresh_token_reused", "the token was already used: its session is now revoked"
            ),
            Unauthenticated("session_revoked", "the session was signed out or revoked"),
            Unauthenticated(
                "session_expired", "the session is older than AGENTOPS_REFRESH_TOKEN_TTL"
            ),
            Unauthenticated("not_a_member", "the user no longer belongs to the session's org"),
            RateLimited("too_many_attempts", _FAILURES),
        ),
    )
    async def refresh(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        auth_failures: NamedDependency[FailedAuthentications],
        data: JSONBody[RefreshForm],
    ) -> TokenPair:
        """A new access token and refresh token; the one sent is used up. Sending a used one
        again revokes the whole session: refresh one request at a time."""
        async with auth_failures.guard():
            return await sessions.rotate_refresh_token(
                db_session,
                settings,
                data.refresh_token,
                actor=audit.Actor("system", None, client_ip(request), request_id(request)),
            )

    # -- password reset (public) ----------------------------------------------------------------

    @post(
        "/password/forgot",
        opt=PUBLIC,
        security=ANYONE,
        status_code=HTTP_202_ACCEPTED,
        summary="Ask for a password-reset email",
        responses=problems(RateLimited("too_many_attempts", _THROTTLED)),
    )
    async def forgot_password(
        self,
        settings: NamedDependency[Settings],
        engine: NamedDependency[AsyncEngine],
        mailer: NamedDependency[Mailer],
        throttle: NamedDependency[Throttle],
        data: JSONBody[ForgotForm],
    ) -> Response[Accepted]:
        """Always 202, whether or not an account has this email (the answer reveals nothing).
        When one does, it gets a link with a single-use token valid for one hour."""
        await throttle.count("reset-request", _account_key(data.email))
        return Response(
            Accepted("If an account has this email, a reset link is on its way."),
            status_code=HTTP_202_ACCEPTED,
            # After the answer, so its timing does not tell whether the account exists.
            background=BackgroundTask(_send_reset_link, engine, settings, mailer, data.email),
        )

    @post(
        "/password/reset",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Set a new password with an emailed token",
        responses=problems(
            Invalid("invalid_reset_token", "not a reset token of this hub"),
            Invalid("reset_token_used", "the token was used, or a newer reset replaced it"),
            Invalid("reset_token_expired", "the token is more than an hour old"),
            Invalid("weak_password", "the new password is too weak; the detail says why"),
            RateLimited("too_many_attempts", _THROTTLED),
        ),
    )
    async def reset_password(
        self,
        request: Request[Any, Any, State],
        db_session: NamedDependency[AsyncSession],
        throttle: NamedDependency[Throttle],
        auth_failures: NamedDependency[FailedAuthentications],
        data: JSONBody[ResetForm],
    ) -> PasswordChanged:
        """Set the password; every session of the user, in every org, ends."""
        parsed = parse_opaque_token(accounts.RESET_TOKEN_KIND, data.token)
        await throttle.count("reset", parsed.owner_id.hex if parsed else None)
        async with auth_failures.guard():
            ended = await accounts.reset_password(
                db_session, data.token, data.new_password, client=client_of(request)
            )
        return PasswordChanged(ended)

    # -- the signed-in user ---------------------------------------------------------------------

    @post(
        "/logout",
        guards=[requires(Permission.ACCOUNT)],
        status_code=204,
        summary="Sign out",
        responses=problems(
            Invalid("no_session", "the credential is not a hub session (a Supabase token)")
        ),
    )
    async def logout(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[LogoutForm | None] = None,
    ) -> None:
        """End this session (its access and refresh tokens stop working at once), or with
        ``everywhere`` every session of the user in every org."""
        principal = request.auth
        user_id, session_id = user_id_of(principal), _session_of(principal)
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
        """The user, the org and role of this credential, and every org the user belongs to.
        ``session_id`` is this hub session's, or null for a Supabase token (no hub session)."""
        principal = request.auth
        return await accounts.account(
            db_session, user_id_of(principal), principal.org_id, principal.session_id
        )

    @patch("/me", guards=[requires(Permission.ACCOUNT)], summary="Change my profile")
    async def update_me(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[ProfileForm],
    ) -> UserProfile:
        """Change the display name."""
        return await accounts.rename(db_session, user_id_of(request.auth), data.name)

    @post(
        "/switch-org",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Sign into another of my orgs",
        responses=problems(Forbidden("not_a_member", "the user does not belong to that org")),
    )
    async def switch_org(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        data: JSONBody[SwitchOrgForm],
    ) -> TokenPair:
        """Tokens of a new session in ``org``; this session stays open."""
        return await accounts.switch_org(
            db_session,
            settings,
            user_id_of(request.auth),
            data.org,
            client=client_of(request),
        )

    @get("/sessions", guards=[requires(Permission.ACCOUNT)], summary="My sessions in this org")
    async def list_sessions(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
    ) -> SessionList:
        """The user's sessions in this org that have not ended, newest first."""
        principal = request.auth
        found = await sessions.list_sessions(
            db_session, principal.org_id, user_id_of(principal), current=principal.session_id
        )
        return SessionList(found)

    @delete(
        "/sessions/{session_id:uuid}",
        guards=[requires(Permission.ACCOUNT)],
        summary="End one of my sessions",
        responses=problems(
            NotFound("session_not_found", "no live session of yours in this org has it"),
        ),
    )
    async def revoke_session(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        session_id: Annotated[uuid.UUID, PathParameter(description="The session's id.")],
    ) -> None:
        """Revoke one of the user's sessions in this org (records ``session.revoked``)."""
        principal = request.auth
        ended = await sessions.revoke_session(
            db_session,
            principal.org_id,
            session_id,
            reason="revoked_by_user",
            user_id=user_id_of(principal),
        )
        if not ended:
            raise NotFound(
                "session_not_found", f"You have no live session {session_id} in this org."
            )
        await audit.record(
            db_session,
            principal.org_id,
            actor_of(request),
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
        responses=problems(
            Forbidden("invalid_password", "the current password is wrong"),
            Invalid("weak_password", "the new password is too weak; the detail says why"),
            RateLimited("too_many_attempts", _THROTTLED),
        ),
    )
    async def change_password(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        throttle: NamedDependency[Throttle],
        data: JSONBody[PasswordChangeForm],
    ) -> PasswordChanged:
        """Replace the password; every other session of the user, in every org, ends (this
        one stays). Records ``user.password_changed``."""
        principal = request.auth
        user_id = user_id_of(principal)
        async with throttle.attempt("password", user_id.hex):
            ended = await accounts.change_password(
                db_session,
                user_id=user_id,
                org_id=principal.org_id,
                session_id=principal.session_id,
                current=data.current_password,
                new=data.new_password,
                client=client_of(request),
            )
        return PasswordChanged(ended)

    # -- two-factor -----------------------------------------------------------------------------

    @post(
        "/mfa/totp",
        guards=[requires(Permission.ACCOUNT)],
        status_code=201,
        summary="Start enrolling an authenticator app",
        responses=problems(Conflict("mfa_already_enabled", "two-factor is on; disable it first")),
    )
    async def start_totp(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
    ) -> TotpEnrolment:
        """A new TOTP secret and its ``otpauth://`` URI (show it as a QR code). Nothing changes
        at sign-in until ``POST /auth/mfa/totp/confirm``."""
        user = await accounts.get_user(db_session, user_id_of(request.auth))
        return await mfa.start_totp(db_session, settings, user)

    @post(
        "/mfa/totp/confirm",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Confirm the authenticator app with a first code",
        responses=problems(
            Invalid("invalid_mfa_code", "the code is wrong"),
            Conflict(
                "mfa_enrolment_not_started", "no pending enrolment: POST /auth/mfa/totp first"
            ),
            Conflict("mfa_already_enabled", "two-factor is already on"),
        ),
    )
    async def confirm_totp(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        data: JSONBody[CodeForm],
    ) -> RecoveryCodes:
        """Turn two-factor on; ten single-use recovery codes, shown this once. Records
        ``user.mfa_enabled``."""
        principal = request.auth
        codes = await mfa.confirm_totp(
            db_session,
            settings,
            user_id_of(principal),
            data.code,
            audit_in=principal.org_id,
            actor=actor_of(request),
        )
        return RecoveryCodes(codes)

    @delete(
        "/mfa/totp",
        guards=[requires(Permission.ACCOUNT)],
        summary="Turn the authenticator app off",
        responses=problems(
            Forbidden("invalid_password", "the password is wrong"),
            Conflict("mfa_not_enabled", "two-factor is not on"),
            RateLimited("too_many_attempts", _THROTTLED),
        ),
    )
    async def disable_totp(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        throttle: NamedDependency[Throttle],
        data: JSONBody[PasswordForm],
    ) -> None:
        """Turn two-factor off (the password confirms it); recovery codes go with it. Records
        ``user.mfa_disabled``."""
        principal = request.auth
        user_id = user_id_of(principal)
        async with throttle.attempt("password", user_id.hex):
            await mfa.disable_totp(
                db_session,
                await accounts.get_user(db_session, user_id),
                data.password,
                audit_in=principal.org_id,
                actor=actor_of(request),
            )

    @post(
        "/mfa/recovery-codes",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Replace my recovery codes",
        responses=problems(
            Forbidden("invalid_password", "the password is wrong"),
            Conflict("mfa_not_enabled", "two-factor is not on"),
            RateLimited("too_many_attempts", _THROTTLED),
        ),
    )
    async def regenerate_recovery_codes(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        throttle: NamedDependency[Throttle],
        data: JSONBody[PasswordForm],
    ) -> RecoveryCodes:
        """Ten new recovery codes (the password confirms it); the old ones stop working."""
        principal = request.auth
        user_id = user_id_of(principal)
        async with throttle.attempt("password", user_id.hex):
            codes = await mfa.regenerate_recovery_codes(
                db_session,
                await accounts.get_user(db_session, user_id),
                data.password,
                audit_in=principal.org_id,
                actor=actor_of(request),
            )
        return RecoveryCodes(codes)


# -- helpers ---------------------------------------------------------------------------------------


def _session_of(principal: Principal) -> uuid.UUID:
    if principal.session_id is None:
        raise Invalid(
            "no_session",
            "This credential is not a hub session (an external identity's token): "
            "sign out with the identity provider.",
        )
    return principal.session_id


def _account_key(email: str) -> str:
    return email.strip().lower()[:320]


async def _send_reset_link(
    engine: AsyncEngine, settings: Settings, mailer: Mailer, email: str
) -> None:
    """Runs after the answer was sent: a failure can only be logged."""
    try:
        async with open_session(engine) as session:
            await accounts.request_password_reset(session, settings, mailer, email)
    except Exception:
        logger.exception("password reset: the email could not be sent")
