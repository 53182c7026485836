"""``/api/v1/auth/password``: forgetting, resetting and changing one's password.

``/forgot`` and ``/reset`` are public (the emailed token is the credential) and limited like
sign-in; ``/change`` acts on the caller's own account (``account:self``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.api.problems import JSON_BODY_LIMIT, THROTTLED, problems
from agentops_server.api.v1.actors import client_of, user_id_of
from agentops_server.api.v1.openapi import ANYONE
from agentops_server.auth.guards import PUBLIC, requires
from agentops_server.backends.mailer import Mailer
from agentops_server.backends.rate_limit import FailedAuthentications, Throttle, account_key
from agentops_server.db.engine import open_session
from agentops_server.refusals import (
    Forbidden,
    Invalid,
)
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.security.tokens import parse_opaque_token
from agentops_server.services.identity import password_changes
from agentops_server.settings import Settings
from agentops_server.values import Text

__all__ = ["PasswordController", "send_reset_link"]

logger = logging.getLogger("agentops_server")


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


@dataclasses.dataclass(frozen=True, slots=True)
class PasswordChanged:
    """How many sessions the change ended."""

    sessions_revoked: int


@dataclasses.dataclass(frozen=True, slots=True)
class Accepted:
    """A request taken without saying more (the password-reset request)."""

    detail: str


class PasswordController(Controller):
    """Passwords."""

    path = "/auth/password"
    tags = ("auth",)
    request_max_body_size = JSON_BODY_LIMIT

    @post(
        "/forgot",
        opt=PUBLIC,
        security=ANYONE,
        status_code=HTTP_202_ACCEPTED,
        summary="Ask for a password-reset email",
        responses=problems(THROTTLED),
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
        await throttle.count("reset-request", account_key(data.email))
        return Response(
            Accepted("If an account has this email, a reset link is on its way."),
            status_code=HTTP_202_ACCEPTED,
            # After the answer, so its timing does not tell whether the account exists.
            background=BackgroundTask(send_reset_link, engine, settings, mailer, data.email),
        )

    @post(
        "/reset",
        opt=PUBLIC,
        security=ANYONE,
        status_code=200,
        summary="Set a new password with an emailed token",
        responses=problems(
            Invalid("invalid_reset_token", "not a reset token of this hub"),
            Invalid("reset_token_used", "the token was used, or a newer reset replaced it"),
            Invalid("reset_token_expired", "the token is more than an hour old"),
            Invalid("weak_password", "the new password is too weak; the detail says why"),
            THROTTLED,
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
        parsed = parse_opaque_token(password_changes.RESET_TOKEN_KIND, data.token)
        await throttle.count("reset", parsed.owner_id.hex if parsed else None)
        async with auth_failures.guard():
            ended = await password_changes.reset_password(
                db_session, data.token, data.new_password, client=client_of(request)
            )
        return PasswordChanged(ended)

    @post(
        "/change",
        guards=[requires(Permission.ACCOUNT)],
        status_code=200,
        summary="Change my password",
        responses=problems(
            Forbidden("invalid_password", "the current password is wrong"),
            Invalid("weak_password", "the new password is too weak; the detail says why"),
            THROTTLED,
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
            ended = await password_changes.change_password(
                db_session,
                user_id=user_id,
                org_id=principal.org_id,
                session_id=principal.session_id,
                current=data.current_password,
                new=data.new_password,
                client=client_of(request),
            )
        return PasswordChanged(ended)


async def send_reset_link(
    engine: AsyncEngine, settings: Settings, mailer: Mailer, email: str
) -> None:
    """Email ``email`` a reset link if an account has it; runs after the answer was sent (so
    its timing tells nothing), so a failure can only be logged. The pages send it too."""
    try:
        async with open_session(engine) as session:
            await password_changes.request_password_reset(session, settings, mailer, email)
    except Exception:
        logger.exception("password reset: the email could not be sent")
