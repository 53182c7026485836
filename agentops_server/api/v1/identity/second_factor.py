"""``/api/v1/auth/mfa``: the caller's second factor (an authenticator app) and recovery codes.

Every route acts on the caller's own account (``account:self``); turning the factor off or
replacing the codes takes the password, limited like sign-in.
"""

from __future__ import annotations

import dataclasses

import msgspec
from litestar import Controller, Request, delete, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, THROTTLED, problems
from agentops_server.api.v1.actors import actor_of, user_id_of
from agentops_server.auth.guards import requires
from agentops_server.backends.rate_limit import Throttle
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Invalid,
)
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.identity import accounts, mfa
from agentops_server.services.identity.mfa import TotpEnrolment
from agentops_server.settings import Settings
from agentops_server.values import Text

__all__ = ["SecondFactorController"]


class CodeForm(msgspec.Struct, forbid_unknown_fields=True):
    """A code from the authenticator app."""

    code: Text


class PasswordForm(msgspec.Struct, forbid_unknown_fields=True):
    """The user's password, confirming a sensitive change."""

    password: Text


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryCodes:
    """Single-use recovery codes, shown this once: keep them somewhere safe."""

    recovery_codes: list[str]


class SecondFactorController(Controller):
    """The second factor."""

    path = "/auth/mfa"
    tags = ("auth",)
    request_max_body_size = JSON_BODY_LIMIT

    @post(
        "/totp",
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
        "/totp/confirm",
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
        "/totp",
        guards=[requires(Permission.ACCOUNT)],
        summary="Turn the authenticator app off",
        responses=problems(
            Forbidden("invalid_password", "the password is wrong"),
            Conflict("mfa_not_enabled", "two-factor is not on"),
            THROTTLED,
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
        "/recovery-codes",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Replace my recovery codes",
        responses=problems(
            Forbidden("invalid_password", "the password is wrong"),
            Conflict("mfa_not_enabled", "two-factor is not on"),
            THROTTLED,
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
