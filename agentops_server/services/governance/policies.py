"""The org's policy set on the hub: immutable versions, table tests, activation, rollback, and
the effective set its SDKs enforce.

One document per org holds every rule; each rule carries its own scope (environment, team, tag,
agent), so there is no set per scope to choose between. Every save is a new version, numbered
1, 2, 3... per org and never changed afterwards; one version (or none) is *active*: that is the
set the SDKs enforce. The document is validated by the SDK's own models
(:func:`agentops_sdk.contract.policy.parse_policy`), and its table tests
(:mod:`agentops_sdk.contract.policy_tests`) are run with the SDK's engine on every save: a
version that fails one is not saved.

The org's *revision* grows whenever its active set changes (an activation, a rollback, a
deactivation): it is the effective set's ETag and its version on the stream
(:func:`policies_snapshot`, :func:`policies_version`). Every change is audited with its actor
and the rule-by-rule diff (:mod:`.policy_diff`).

Team leads hold ``policies:write`` within their teams: every rule a change of theirs adds,
removes or changes must be scoped to teams they belong to (``scope.team``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.policy import EffectivePolicy
from agentops_server.backends.live import StreamTopic
from agentops_server.db.models import PolicyState, PolicyVersion
from agentops_server.db.upsert import dialect_insert
from agentops_server.refusals import Conflict, Invalid, NotFound
from agentops_server.security.principal import Principal
from agentops_server.services import audit
from agentops_server.services.audit import Actor
from agentops_server.services.governance.policy_checks import (
    check_reach,
    checked_tests,
    validated_document,
)
from agentops_server.services.governance.policy_diff import diff_documents

__all__ = [
    "POLICIES",
    "POLICIES_TOPIC",
    "MAX_LISTED",
    "PoliciesChanged",
    "PolicyStatus",
    "VersionDetail",
    "VersionDiff",
    "VersionList",
    "VersionSummary",
    "activate_version",
    "deactivate",
    "diff_versions",
    "effective_policy",
    "get_version",
    "list_versions",
    "policies_snapshot",
    "policies_version",
    "policy_status",
    "rollback_to",
    "save_version",
]

MAX_LISTED = 200

PoliciesChanged = Callable[[uuid.UUID], Awaitable[None]]
"""Told an org's id after its active policy set changed (the push to its SDKs)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VersionSummary:
    """A version as listed: who saved it, when, why, and whether it is the active one."""

    id: uuid.UUID
    number: int
    comment: str | None
    author_type: str
    author_id: uuid.UUID | None
    created_at: dt.datetime
    rolled_back_from: int | None
    rules: int
    tests: int
    active: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VersionDetail(VersionSummary):
    """A version with its document and its table tests."""

    document: dict[str, Any]
    table_tests: list[Any]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VersionList:
    """Versions, newest first; ``next_before`` pages on (None: the first version is listed)."""

    items: list[VersionSummary]
    next_before: int | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VersionDiff:
    """What changed from version ``from_number`` (None: nothing before) to ``to_number``."""

    from_number: int | None
    to_number: int
    diff: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PolicyStatus:
    """The org's policy head: its newest and its active version, and its revision."""

    latest_number: int
    active_number: int | None
    active_id: uuid.UUID | None
    revision: int
    activated_at: dt.datetime | None


# -- reading ----------------------------------------------------------------------------------


async def policy_status(session: AsyncSession, org_id: uuid.UUID) -> PolicyStatus:
    """The org's policy head (all zeros and None before its first version)."""
    state = await session.get(PolicyState, org_id)
    if state is None:
        return PolicyStatus(
            latest_number=0, active_number=None, active_id=None, revision=0, activated_at=None
        )
    active = None if state.active_id is None else await _version(session, org_id, state.active_id)
    return PolicyStatus(
        latest_number=state.latest_number,
        active_number=None if active is None else active.number,
        active_id=state.active_id,
        revision=state.revision,
        activated_at=state.activated_at,
    )


async def list_versions(
    session: AsyncSession, org_id: uuid.UUID, *, limit: int = 50, before: int | None = None
) -> VersionList:
    """Versions newest first, ``limit`` at a time, those numbered below ``before``."""
    if not 1 <= limit <= MAX_LISTED:
        raise Invalid("invalid_limit", f"limit is between 1 and {MAX_LISTED}.")
    query = select(PolicyVersion).where(PolicyVersion.org_id == org_id)
    if before is not None:
        query = query.where(PolicyVersion.number < before)
    found = list(await session.scalars(query.order_by(PolicyVersion.number.desc()).limit(limit)))
    active_id = await _active_id(session, org_id)
    return VersionList(
        items=[_summary(row, active_id) for row in found],
        next_before=found[-1].number if len(found) == limit and found[-1].number > 1 else None,
    )


async def get_version(
    session: AsyncSession, org_id: uuid.UUID, version_id: uuid.UUID
) -> VersionDetail:
    """One version with its document and tests (``policy_version_not_found``)."""
    row = await _version(session, org_id, version_id)
    return _detail(row, await _active_id(session, org_id))


async def diff_versions(
    session: AsyncSession,
    org_id: uuid.UUID,
    version_id: uuid.UUID,
    against: uuid.UUID | None = None,
) -> VersionDiff:
    """What changed from ``against`` (default: the version before) to ``version_id``."""
    row = await _version(session, org_id, version_id)
    if against is not None:
        base: PolicyVersion | None = await _version(session, org_id, against)
    else:
        base = await session.scalar(
            select(PolicyVersion).where(
                PolicyVersion.org_id == org_id, PolicyVersion.number == row.number - 1
            )
        )
    return VersionDiff(
        from_number=None if base is None else base.number,
        to_number=row.number,
        diff=diff_documents(None if base is None else base.document, row.document),
    )


async def effective_policy(session: AsyncSession, org_id: uuid.UUID) -> EffectivePolicy:
    """What the org's SDKs enforce: the active set (or none) at the org's revision."""
    state = await session.get(PolicyState, org_id)
    if state is None:
        return EffectivePolicy(org_id=org_id, version=0, policy=None, activated_at=None)
    document = None
    if state.active_id is not None:
        document = (await _version(session, org_id, state.active_id)).document
    return EffectivePolicy.model_validate(
        {
            "org_id": org_id,
            "version": state.revision,
            "policy": document,
            "activated_at": state.activated_at,
        }
    )


async def policies_version(session: AsyncSession, org_id: uuid.UUID) -> int:
    """The org's policy revision (0: never activated): the stream's version of ``policies``."""
    revision = await session.scalar(
        select(PolicyState.revision).where(PolicyState.org_id == org_id)
    )
    return int(revision or 0)


async def policies_snapshot(session: AsyncSession, org_id: uuid.UUID) -> tuple[int, str]:
    """The stream's ``policies`` event: the revision, and the effective set as JSON."""
    effective = await effective_policy(session, org_id)
    return effective.version, effective.to_json()


POLICIES = "policies"
POLICIES_TOPIC = StreamTopic(POLICIES, snapshot=policies_snapshot, version=policies_version)
"""The org's effective policy set on its live stream (``GET /api/v1/stream``)."""


# -- changing ---------------------------------------------------------------------------------


async def save_version(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    *,
    document: Any,
    tests: Any = (),
    comment: str | None = None,
    activate: bool = False,
) -> VersionDetail:
    """Save ``document`` and its table tests as the org's next version (activated at once with
    ``activate``); audit ``policy.version_saved`` (and ``policy.activated``); commit.

    Refusals: ``invalid_policy``, ``invalid_policy_tests``, ``policy_tests_failed``,
    ``not_your_team``.
    """
    org_id = principal.org_id
    policy = validated_document(document)
    stored_tests = checked_tests(policy, tests)
    previous = await session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.org_id == org_id)
        .order_by(PolicyVersion.number.desc())
        .limit(1)
    )
    await check_reach(session, principal, None if previous is None else previous.document, document)
    row = await _new_version(
        session, org_id, actor, document, tests=stored_tests, comment=comment, rolled_back_from=None
    )
    await audit.record(
        session,
        org_id,
        actor,
        "policy.version_saved",
        target_type="policy_version",
        target_id=row.id,
        after={
            "number": row.number,
            "comment": comment,
            "diff": diff_documents(None if previous is None else previous.document, row.document),
        },
    )
    if activate:
        await _activate(session, actor, row, "policy.activated")
    await session.commit()
    return _detail(row, await _active_id(session, org_id))


async def activate_version(
    session: AsyncSession, principal: Principal, actor: Actor, version_id: uuid.UUID
) -> PolicyStatus:
    """Make a version the one the SDKs enforce; audit ``policy.activated`` with the diff from
    the set it replaces; commit. Refusals: ``policy_version_not_found``, ``already_active``,
    ``not_your_team``."""
    row = await _version(session, principal.org_id, version_id)
    active = await _active_document(session, principal.org_id)
    if await _active_id(session, principal.org_id) == row.id:
        raise Conflict("already_active", f"Version {row.number} is the active one already.")
    await check_reach(session, principal, active, row.document)
    await _activate(session, actor, row, "policy.activated")
    await session.commit()
    return await policy_status(session, principal.org_id)


async def rollback_to(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    version_id: uuid.UUID,
    comment: str | None = None,
) -> VersionDetail:
    """Roll back to an earlier version: its document and tests saved again as the next
    version (``rolled_back_from`` says which), activated at once; audit ``policy.rolled_back``;
    commit. Its tests run again (they passed when it was saved, against the same document, so
    they fail only if the engine changed meaning meanwhile). Refusals:
    ``policy_version_not_found``, ``policy_tests_failed``, ``not_your_team``."""
    org_id = principal.org_id
    target = await _version(session, org_id, version_id)
    checked_tests(validated_document(target.document), target.tests)
    await check_reach(session, principal, await _active_document(session, org_id), target.document)
    row = await _new_version(
        session,
        org_id,
        actor,
        target.document,
        tests=target.tests,
        comment=comment or f"rollback to version {target.number}",
        rolled_back_from=target.number,
    )
    await _activate(session, actor, row, "policy.rolled_back")
    await session.commit()
    return _detail(row, row.id)


async def deactivate(session: AsyncSession, principal: Principal, actor: Actor) -> PolicyStatus:
    """Stop enforcing any set from the hub (SDKs fall back to their local policy file);
    audit ``policy.deactivated``; commit. Refusals: ``no_active_policy``,
    ``not_your_team``."""
    org_id = principal.org_id
    state = await session.get(PolicyState, org_id)
    if state is None or state.active_id is None:
        raise Conflict("no_active_policy", "The org has no active policy set.")
    before = await _version(session, org_id, state.active_id)
    await check_reach(session, principal, before.document, None)
    await session.execute(
        update(PolicyState)
        .where(PolicyState.org_id == org_id)
        .values(active_id=None, revision=PolicyState.revision + 1, activated_at=_now())
    )
    await audit.record(
        session,
        org_id,
        actor,
        "policy.deactivated",
        target_type="policy_version",
        target_id=before.id,
        before={"active_number": before.number},
        after={"active_number": None, "diff": diff_documents(before.document, None)},
    )
    await session.commit()
    return await policy_status(session, org_id)


# -- helpers ----------------------------------------------------------------------------------


async def _new_version(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    document: dict[str, Any],
    *,
    tests: list[Any],
    comment: str | None,
    rolled_back_from: int | None,
) -> PolicyVersion:
    """The next version, numbered in one statement (concurrent saves each get their own)."""
    table = PolicyState.__table__
    assert isinstance(table, Table)
    insert = dialect_insert(session, table).values(org_id=org_id, latest_number=1, revision=0)
    numbered = insert.on_conflict_do_update(
        index_elements=[table.c.org_id], set_={"latest_number": table.c.latest_number + 1}
    ).returning(table.c.latest_number)
    number = int((await session.execute(numbered)).scalar_one())
    row = PolicyVersion(
        org_id=org_id,
        id=uuid.uuid4(),
        number=number,
        document={**document, "version": number},
        tests=tests,
        comment=comment,
        author_type=actor.type,
        author_id=actor.id,
        rolled_back_from=rolled_back_from,
        created_at=_now(),
    )
    session.add(row)
    await session.flush()
    return row


async def _activate(session: AsyncSession, actor: Actor, row: PolicyVersion, action: str) -> None:
    """Point the org's head at ``row`` and bump its revision; audit ``action`` with the diff."""
    before = await _active_version(session, row.org_id)
    await session.execute(
        update(PolicyState)
        .where(PolicyState.org_id == row.org_id)
        .values(active_id=row.id, revision=PolicyState.revision + 1, activated_at=_now())
    )
    await audit.record(
        session,
        row.org_id,
        actor,
        action,
        target_type="policy_version",
        target_id=row.id,
        before={"active_number": None if before is None else before.number},
        after={
            "active_number": row.number,
            "diff": diff_documents(None if before is None else before.document, row.document),
        },
    )


async def _version(
    session: AsyncSession, org_id: uuid.UUID, version_id: uuid.UUID
) -> PolicyVersion:
    row = await session.get(PolicyVersion, (org_id, version_id))
    if row is None:
        raise NotFound("policy_version_not_found", "The org has no such policy version.")
    return row


async def _active_id(session: AsyncSession, org_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(select(PolicyState.active_id).where(PolicyState.org_id == org_id))


async def _active_version(session: AsyncSession, org_id: uuid.UUID) -> PolicyVersion | None:
    active_id = await _active_id(session, org_id)
    return None if active_id is None else await _version(session, org_id, active_id)


async def _active_document(session: AsyncSession, org_id: uuid.UUID) -> dict[str, Any] | None:
    active = await _active_version(session, org_id)
    return None if active is None else active.document


def _summary(row: PolicyVersion, active_id: uuid.UUID | None) -> VersionSummary:
    return VersionSummary(**_summary_fields(row, active_id))


def _detail(row: PolicyVersion, active_id: uuid.UUID | None) -> VersionDetail:
    return VersionDetail(
        **_summary_fields(row, active_id), document=row.document, table_tests=row.tests
    )


def _summary_fields(row: PolicyVersion, active_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "number": row.number,
        "comment": row.comment,
        "author_type": row.author_type,
        "author_id": row.author_id,
        "created_at": row.created_at,
        "rolled_back_from": row.rolled_back_from,
        "rules": len(row.document.get("rules") or []),
        "tests": len(row.tests),
        "active": row.id == active_id,
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
