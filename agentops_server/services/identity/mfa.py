"""Second factors: TOTP authenticator apps and single-use recovery codes.

Enrolment is two steps: :func:`start_totp` makes a pending factor and returns its secret (and
the ``otpauth://`` URI authenticator apps read from a QR code); :func:`confirm_totp` checks a
first code, confirms the factor and returns ten recovery codes, shown that once. From then on
signing in needs a code (:func:`verify_second_factor`).

- TOTP secrets are stored encrypted (Fernet, with a key derived from ``AGENTOPS_SECRET_KEY``:
  changing that key makes enrolled factors unreadable, so their users sign in with a recovery
  code and enrol again).
- A code is accepted one step (30 s) either side of now, and never twice: the factor keeps the
  last step used (``last_used_step``) and a conditional update claims a newer one.
- Recovery codes are 64 random bits, stored as SHA-256 hashes, each used once.

``mfa_factors.kind`` leaves room for other factors: verification dispatches on the kind
(:data:`FACTOR_KINDS`); only enrolment is specific to TOTP.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import secrets
import uuid
from typing import ClassVar

import pyotp
from cryptography.fernet import Fernet, InvalidToken
from pyotp.exceptions import OTPVerificationError
from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import MfaFactor, RecoveryCode, User
from agentops_server.refusals import Conflict, Forbidden, Invalid, Unauthenticated
from agentops_server.security.passwords import verify_password
from agentops_server.security.sealing import sealing_key
from agentops_server.security.tokens import hash_secret
from agentops_server.services import audit
from agentops_server.services.row_claims import claim
from agentops_server.settings import Settings

__all__ = [
    "FACTOR_KINDS",
    "ISSUER",
    "RECOVERY_CODE_COUNT",
    "FactorKind",
    "TotpEnrolment",
    "confirm_totp",
    "disable_totp",
    "enabled_kinds",
    "recovery_codes_left",
    "regenerate_recovery_codes",
    "start_totp",
    "verify_second_factor",
]

ISSUER = "AgentOps Hub"
"""The issuer authenticator apps show next to the account."""
RECOVERY_CODE_COUNT = 10
TOTP = "totp"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TotpEnrolment:
    """A pending TOTP factor: the secret to type in, or the URI to show as a QR code."""

    factor_id: uuid.UUID
    secret: str
    otpauth_uri: str


class FactorKind(abc.ABC):
    """How codes of one kind of second factor are checked."""

    name: ClassVar[str]

    @abc.abstractmethod
    def matching_step(self, secret: str, code: str, now: dt.datetime) -> int | None:
        """The counter step ``code`` is valid for at ``now``, or None when it is not valid.
        Steps only grow: a code whose step is not past the last one used is a replay."""


class Totp(FactorKind):
    """RFC 6238 time-based codes: 6 digits, 30-second steps, one step of clock drift."""

    name = TOTP

    def matching_step(self, secret: str, code: str, now: dt.datetime) -> int | None:
        """The step of ``code`` among now and one step either side."""
        if len(code) != 6 or not code.isdigit():
            return None
        try:
            return pyotp.TOTP(secret).verify_and_get_timecode(code, for_time=now, valid_window=1)
        except OTPVerificationError:
            return None


FACTOR_KINDS: dict[str, FactorKind] = {kind.name: kind for kind in (Totp(),)}
"""Every kind of second factor the hub can verify, by ``mfa_factors.kind``."""


async def enabled_kinds(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """The kinds of the confirmed second factors of ``user_id`` (empty: no second factor)."""
    kinds = await session.scalars(
        select(MfaFactor.kind)
        .where(MfaFactor.user_id == user_id, MfaFactor.confirmed_at.is_not(None))
        .order_by(MfaFactor.kind)
    )
    return list(dict.fromkeys(kinds))


async def start_totp(session: AsyncSession, settings: Settings, user: User) -> TotpEnrolment:
    """Begin TOTP enrolment for ``user`` (replacing a pending one) and commit."""
    if TOTP in await enabled_kinds(session, user.id):
        raise Conflict(
            "mfa_already_enabled", "Two-factor authentication is already on; disable it first."
        )
    await session.execute(
        delete(MfaFactor).where(
            MfaFactor.user_id == user.id, MfaFactor.kind == TOTP, MfaFactor.confirmed_at.is_(None)
        )
    )
    secret = pyotp.random_base32()
    factor = MfaFactor(
        id=uuid.uuid4(),
        user_id=user.id,
        kind=TOTP,
        secret=_cipher(settings).encrypt(secret.encode()).decode(),
        label="Authenticator app",
    )
    session.add(factor)
    await session.commit()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return TotpEnrolment(factor_id=factor.id, secret=secret, otpauth_uri=uri)


async def confirm_totp(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    code: str,
    *,
    audit_in: uuid.UUID,
    actor: audit.Actor,
) -> list[str]:
    """Confirm the pending TOTP factor with its first ``code``; new recovery codes; commit.

    Records ``user.mfa_enabled`` in the org ``audit_in``.
    """
    factor = await session.scalar(
        select(MfaFactor).where(
            MfaFactor.user_id == user_id, MfaFactor.kind == TOTP, MfaFactor.confirmed_at.is_(None)
        )
    )
    if factor is None:
        if TOTP in await enabled_kinds(session, user_id):
            raise Conflict("mfa_already_enabled", "Two-factor authentication is already on.")
        raise Conflict(
            "mfa_enrolment_not_started", "Start enrolment first: POST /api/v1/auth/mfa/totp."
        )
    step = _step_of(settings, factor, code)
    if step is None:
        # The caller is signed in and stays so: a wrong first code is a bad request, not a
        # failed authentication.
        raise Invalid("invalid_mfa_code", _WRONG_CODE)
    factor.confirmed_at = dt.datetime.now(dt.UTC)
    factor.last_used_step = step
    codes = await _replace_recovery_codes(session, user_id)
    await audit.record(
        session,
        audit_in,
        actor,
        "user.mfa_enabled",
        target_type="user",
        target_id=user_id,
        after={"kind": TOTP},
    )
    await session.commit()
    return codes


async def verify_second_factor(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    *,
    code: str | None = None,
    recovery_code: str | None = None,
) -> str:
    """Check a code of one of ``user_id``'s factors, or one of their recovery codes, and
    commit its use; what matched (a factor kind, or ``recovery_code``)."""
    now = dt.datetime.now(dt.UTC)
    if recovery_code is not None:
        used: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == _hash_recovery_code(recovery_code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if used.rowcount != 1:
            raise Unauthenticated("invalid_mfa_code", "The recovery code is wrong or already used.")
        await session.commit()
        return "recovery_code"
    factors = await session.scalars(
        select(MfaFactor).where(MfaFactor.user_id == user_id, MfaFactor.confirmed_at.is_not(None))
    )
    for factor in factors:
        step = _step_of(settings, factor, code or "", now)
        if step is None:
            continue
        fresh = or_(MfaFactor.last_used_step.is_(None), MfaFactor.last_used_step < step)
        if not await claim(session, factor, fresh, last_used_step=step):
            raise Unauthenticated(
                "mfa_code_reused", "This code was already used; wait for the next one."
            )
        await session.commit()
        return factor.kind
    raise _wrong_code()


async def disable_totp(
    session: AsyncSession, user: User, password: str, *, audit_in: uuid.UUID, actor: audit.Actor
) -> None:
    """Turn TOTP off for ``user`` after checking ``password``; drop their recovery codes when
    no factor is left; record ``user.mfa_disabled`` in ``audit_in``; commit."""
    await _confirm_password(user, password)
    removed: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        delete(MfaFactor).where(MfaFactor.user_id == user.id, MfaFactor.kind == TOTP)
    )
    if removed.rowcount == 0:
        raise _not_enabled()
    if not await enabled_kinds(session, user.id):
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    await audit.record(
        session,
        audit_in,
        actor,
        "user.mfa_disabled",
        target_type="user",
        target_id=user.id,
        before={"kind": TOTP},
    )
    await session.commit()


async def regenerate_recovery_codes(
    session: AsyncSession, user: User, password: str, *, audit_in: uuid.UUID, actor: audit.Actor
) -> list[str]:
    """Replace ``user``'s recovery codes after checking ``password``; the new ones; commit."""
    await _confirm_password(user, password)
    if not await enabled_kinds(session, user.id):
        raise _not_enabled()
    codes = await _replace_recovery_codes(session, user.id)
    await audit.record(
        session,
        audit_in,
        actor,
        "user.recovery_codes_regenerated",
        target_type="user",
        target_id=user.id,
    )
    await session.commit()
    return codes


async def recovery_codes_left(session: AsyncSession, user_id: uuid.UUID) -> int:
    """How many unused recovery codes ``user_id`` has."""
    left = await session.scalar(
        select(func.count()).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return int(left or 0)


async def _confirm_password(user: User, password: str) -> None:
    if not await verify_password(password, user.password_hash):
        raise Forbidden("invalid_password", "The password is wrong.")


async def _replace_recovery_codes(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(
        RecoveryCode(user_id=user_id, id=uuid.uuid4(), code_hash=_hash_recovery_code(code))
        for code in codes
    )
    return codes


_WRONG_CODE = "The code is wrong; check the authenticator app."


def _wrong_code() -> Unauthenticated:
    return Unauthenticated("invalid_mfa_code", _WRONG_CODE)


def _not_enabled() -> Conflict:
    return Conflict("mfa_not_enabled", "Two-factor authentication is not on.")


def _new_recovery_code() -> str:
    raw = secrets.token_hex(8)
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _hash_recovery_code(code: str) -> str:
    """Codes are compared without case, spaces or hyphens: people copy them by hand."""
    return hash_secret("".join(code.split()).replace("-", "").lower())


def _step_of(
    settings: Settings, factor: MfaFactor, code: str, now: dt.datetime | None = None
) -> int | None:
    kind = FACTOR_KINDS.get(factor.kind)
    if kind is None:
        return None
    try:
        secret = _cipher(settings).decrypt(factor.secret.encode()).decode()
    except InvalidToken:
        return None  # sealed under another secret key: this factor cannot be checked
    return kind.matching_step(secret, "".join(code.split()), now or dt.datetime.now(dt.UTC))


def _cipher(settings: Settings) -> Fernet:
    return sealing_key(settings.secret_key, "mfa-secrets")
