"""Emergency controls: pause or kill an org's agents at a scope, change and clear controls.

A control sets a state (``active``, ``paused``, ``killed``) at one scope of the org: the org
itself, an environment, a team (by name), a tag, an agent (by name) or a run (by id). Each scope
holds at most one control: setting a scope again changes its control (its ``version`` goes up).
``active`` lifts that scope's control (``resume``) but no other: an org-wide kill still holds
over an agent set ``active``, since the strictest live control decides
(:func:`agentops_sdk.contract.controls.effective_control`). Clearing deletes the control.

Every change carries a reason, the operator's name (a person's email, ``api_key:<id>``,
``cli``, ``system``), an optional expiry (``expires_at``, or ``duration`` seconds from now) and,
for a pause, how long a new call waits for a resume (``pause_timeout``). In one transaction, it
is audited (``control.set``, ``control.changed``, ``control.cleared``; before and after) and
bumps the org's control version; after the commit, ``governance.control_changed`` is handed to
derived work (notifications), with the payload described in :func:`notice`. Pushing the new
state to connected SDKs is the caller's (the controllers call ``controls_changed``; the CLI
relies on the hubs watching the version).

Bulk: one control per agent, for a list of agent names or every agent a registry filter
matches, in one transaction (``set_bulk``).

A team scope names the team: renaming it moves its controls along (:func:`follow_team_rename`),
deleting it clears them (:func:`follow_team_deletion`), so a later team of the same name does
not inherit them.

Team leads act within their teams: on their teams, their agents and their agents' runs; the
org, environments and tags are the whole org's, so owners' and admins' (``not_your_team``).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import msgspec
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.controls import Control, ControlScope, ControlState, ScopeKind
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.models import Agent, Run, Team
from agentops_server.db.models import Control as ControlRow
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound
from agentops_server.services import audit
from agentops_server.services.governance.agents import ENVIRONMENTS, AgentFilter, list_agents
from agentops_server.services.governance.control_sets import control_of, load_control_set
from agentops_server.services.governance.operators import Operator
from agentops_server.services.governance.versions import bump_control_version
from agentops_server.values import Text, Timestamp

__all__ = [
    "CONTROL_CHANGED",
    "BulkControl",
    "ControlChange",
    "ControlList",
    "ControlRequest",
    "ControlsChanged",
    "ScopeRequest",
    "change_control",
    "checked_scope",
    "clear_control",
    "follow_team_deletion",
    "follow_team_rename",
    "load_control_set",
    "notice",
    "set_bulk",
    "set_control",
]

logger = logging.getLogger("agentops_server.controls")

CONTROL_CHANGED: Final = "governance.control_changed"
"""The derived-work task name handed over after every committed change of controls."""

ControlsChanged = Callable[[uuid.UUID], Awaitable[None]]
"""Told an org's id after its controls or agent profiles changed (the push to its SDKs)."""

Action = Literal["kill", "pause", "resume", "clear"]
_ACTIONS: Final[dict[str, Action]] = {"killed": "kill", "paused": "pause", "active": "resume"}
MAX_DURATION = 366 * 86400.0

Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_DURATION)]
PauseTimeout = Annotated[float, msgspec.Meta(ge=0, le=3600)]


class ScopeRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where a control applies: ``org`` (no value), ``environment`` (prod, staging, test,
    dev), ``team`` (its name), ``tag``, ``agent`` (its name) or ``run`` (its id)."""

    kind: ScopeKind
    value: Text | None = None


class ControlRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Set the control of one scope. ``expires_at`` or ``duration`` (seconds): when it stops
    applying on its own; ``pause_timeout``: how long a paused call waits for a resume."""

    scope: ScopeRequest
    state: ControlState
    reason: Text
    expires_at: Timestamp | None = None
    duration: Seconds | None = None
    pause_timeout: PauseTimeout = 0.0


class BulkControl(msgspec.Struct, forbid_unknown_fields=True):
    """Set one control per agent: for ``agents`` (names), or every agent ``filter`` matches."""

    state: ControlState
    reason: Text
    agents: Annotated[list[Text], msgspec.Meta(max_length=1000)] | None = None
    filter: AgentFilter | None = None
    expires_at: Timestamp | None = None
    duration: Seconds | None = None
    pause_timeout: PauseTimeout = 0.0


class ControlChange(msgspec.Struct, forbid_unknown_fields=True):
    """Change a control: a new reason, always, and whatever else is given (``expires_at``
    null: never)."""

    reason: Text
    state: ControlState | msgspec.UnsetType = msgspec.UNSET
    expires_at: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    duration: Seconds | msgspec.UnsetType = msgspec.UNSET
    pause_timeout: PauseTimeout | msgspec.UnsetType = msgspec.UNSET


class ControlList(msgspec.Struct):
    """The controls a bulk change set, one per agent."""

    items: list[Control]


async def set_control(
    session: AsyncSession,
    operator: Operator,
    request: ControlRequest,
    derived: DerivedWork | None = None,
) -> Control:
    """Set the control of ``request.scope``; audit; bump the control version; commit; notify.

    Refusals: ``invalid_scope``, ``invalid_reason``, ``invalid_expiry``, ``team_not_found``,
    ``agent_not_found`` and ``run_not_found`` (for a team lead), ``not_your_team``,
    ``control_conflict``.
    """
    scope = await checked_scope(session, operator, request.scope)
    expires_at = _expiry(request.expires_at, request.duration)
    [row] = await _set(
        session,
        operator,
        [scope],
        state=request.state,
        reason=_reason(request.reason),
        expires_at=expires_at,
        pause_timeout=request.pause_timeout,
    )
    await _commit(session)
    control = control_of(row)
    await _notify(derived, notice(operator, [control], _ACTIONS[control.state], control.reason))
    return control


async def set_bulk(
    session: AsyncSession,
    operator: Operator,
    request: BulkControl,
    derived: DerivedWork | None = None,
) -> ControlList:
    """Set one control per agent named in ``request.agents``, or matched by
    ``request.filter``, in one transaction; audit each; bump the version once; commit; notify
    once. No agent matched: nothing changes.

    Refusals: ``invalid_selection`` (neither or both of ``agents`` and ``filter``), those of
    :func:`set_control`.
    """
    if (request.agents is None) == (request.filter is None):
        raise Invalid("invalid_selection", "Give either `agents` (names) or `filter`.")
    reason = _reason(request.reason)
    expires_at = _expiry(request.expires_at, request.duration)
    if request.filter is not None:
        matched = await list_agents(session, operator.org_id, request.filter)
        names = [agent.name for agent in matched.items]
    else:
        names = list(dict.fromkeys(request.agents or ()))
    scopes = [
        await checked_scope(session, operator, ScopeRequest(kind="agent", value=Text(name)))
        for name in names
    ]
    if not scopes:
        return ControlList(items=[])
    rows = await _set(
        session,
        operator,
        scopes,
        state=request.state,
        reason=reason,
        expires_at=expires_at,
        pause_timeout=request.pause_timeout,
    )
    await _commit(session)
    controls = [control_of(row) for row in rows]
    await _notify(derived, notice(operator, controls, _ACTIONS[request.state], reason))
    return ControlList(items=controls)


async def change_control(
    session: AsyncSession,
    operator: Operator,
    control_id: uuid.UUID,
    change: ControlChange,
    derived: DerivedWork | None = None,
) -> Control:
    """Change the control ``control_id``; audit; bump the control version; commit; notify.

    Refusals: ``control_not_found``, ``not_your_team``, ``invalid_reason``, ``invalid_expiry``.
    """
    row = await _row(session, operator.org_id, control_id)
    await checked_scope(session, operator, _scope_of(row))
    reason = _reason(change.reason)
    before = _snapshot(row)
    if not isinstance(change.state, msgspec.UnsetType):
        row.state = change.state
    if not isinstance(change.pause_timeout, msgspec.UnsetType):
        row.pause_timeout = change.pause_timeout
    if not isinstance(change.duration, msgspec.UnsetType):
        row.expires_at = _expiry(None, change.duration)
    elif not isinstance(change.expires_at, msgspec.UnsetType):
        row.expires_at = _expiry(change.expires_at, None)
    row.reason, row.actor = reason, operator.name
    row.version += 1
    row.updated_at = dt.datetime.now(dt.UTC)
    await _record(session, operator, "control.changed", row, before)
    await bump_control_version(session, operator.org_id)
    await _commit(session)
    control = control_of(row)
    await _notify(derived, notice(operator, [control], _ACTIONS[control.state], reason))
    return control


async def clear_control(
    session: AsyncSession,
    operator: Operator,
    control_id: uuid.UUID,
    reason: str,
    derived: DerivedWork | None = None,
) -> None:
    """Delete the control ``control_id``; audit (with ``reason``); bump the control version;
    commit; notify.

    Refusals: ``control_not_found``, ``not_your_team``, ``invalid_reason``.
    """
    row = await _row(session, operator.org_id, control_id)
    await checked_scope(session, operator, _scope_of(row))
    reason = _reason(reason)
    control = control_of(row)
    await session.delete(row)
    await audit.record(
        session,
        operator.org_id,
        operator.audit,
        "control.cleared",
        target_type="control",
        target_id=control_id,
        before=_snapshot(row),
        after={"reason": reason, "actor": operator.name},
    )
    await bump_control_version(session, operator.org_id)
    await _commit(session)
    await _notify(derived, notice(operator, [control], "clear", reason))


async def follow_team_rename(
    session: AsyncSession, org_id: uuid.UUID, old_name: str, new_name: str
) -> None:
    """Keep the controls on a team on it when it is renamed (team scopes name teams), and bump
    the control version (the agents' profiles name it too); in the rename's transaction."""
    await session.execute(
        update(ControlRow)
        .where(
            ControlRow.org_id == org_id,
            ControlRow.scope_kind == "team",
            ControlRow.scope_value == old_name,
        )
        .values(scope_value=new_name, version=ControlRow.version + 1)
        .execution_options(synchronize_session=False)
    )
    await bump_control_version(session, org_id)


async def follow_team_deletion(
    session: AsyncSession, org_id: uuid.UUID, actor: audit.Actor, name: str
) -> int:
    """Clear the controls on the team ``name``, being deleted (its agents belong to no team
    any more, so none applies; a new team of that name must not inherit them): each audited
    as ``control.cleared``; in the deletion's transaction. Returns how many were cleared."""
    rows = (
        await session.scalars(
            select(ControlRow).where(
                ControlRow.org_id == org_id,
                ControlRow.scope_kind == "team",
                ControlRow.scope_value == name,
            )
        )
    ).all()
    for row in rows:
        await session.delete(row)
        await audit.record(
            session,
            org_id,
            actor,
            "control.cleared",
            target_type="control",
            target_id=row.id,
            before=_snapshot(row),
            after={"reason": f"team {name} was deleted"},
        )
    return len(rows)


def notice(
    operator: Operator, controls: Sequence[Control], action: Action, reason: str
) -> dict[str, Any]:
    """The ``governance.control_changed`` payload: ``org_id``, ``control_ids``, ``action``
    (kill, pause, resume, clear), ``scope`` (``{"kind", "value"}``, or a list of them for a bulk
    change), ``reason``, ``actor`` and ``changed_at`` (so that two equal changes stay two
    notices, while a retried notice stays one)."""
    scopes = [control.scope.model_dump() for control in controls]
    return {
        "org_id": str(operator.org_id),
        "control_ids": [str(control.id) for control in controls],
        "action": action,
        "scope": scopes[0] if len(scopes) == 1 else scopes,
        "reason": reason,
        "actor": operator.name,
        "changed_at": dt.datetime.now(dt.UTC).isoformat(),
    }


# -- helpers ---------------------------------------------------------------------------------------


async def _set(
    session: AsyncSession,
    operator: Operator,
    scopes: list[ControlScope],
    *,
    state: ControlState,
    reason: str,
    expires_at: dt.datetime | None,
    pause_timeout: float,
) -> list[ControlRow]:
    """Set (create or change) the control of each of ``scopes``, audited; bump the version."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    for scope in scopes:
        row = await session.scalar(
            select(ControlRow).where(
                ControlRow.org_id == operator.org_id,
                ControlRow.scope_kind == scope.kind,
                ControlRow.scope_value == (scope.value or ""),
            )
        )
        before = None if row is None else _snapshot(row)
        if row is None:
            row = ControlRow(
                org_id=operator.org_id,
                id=uuid.uuid4(),
                scope_kind=scope.kind,
                scope_value=scope.value or "",
                version=0,
                created_at=now,
            )
            session.add(row)
        row.state, row.reason, row.actor = state, reason, operator.name
        row.expires_at, row.pause_timeout = expires_at, pause_timeout
        row.version += 1
        row.updated_at = now
        await _record(session, operator, "control.set", row, before)
        rows.append(row)
    await bump_control_version(session, operator.org_id)
    return rows


async def checked_scope(
    session: AsyncSession, operator: Operator, requested: ScopeRequest
) -> ControlScope:
    """The scope, valid and within the operator's reach (budgets' scopes are checked so too).

    Refusals: ``invalid_scope``, ``not_your_team``, ``team_not_found``, ``agent_not_found``,
    ``run_not_found``."""
    kind, value = requested.kind, (requested.value or "").strip()
    if kind == "org":
        if value:
            raise Invalid("invalid_scope", "The org scope takes no value.")
        _whole_org_only(operator, kind)
        return ControlScope(kind="org")
    if not 1 <= len(value) <= 256:
        raise Invalid("invalid_scope", f"A {kind} scope needs a value of 1 to 256 characters.")
    if kind == "environment" and value not in ENVIRONMENTS:
        raise Invalid("invalid_scope", f"An environment is one of {', '.join(ENVIRONMENTS)}.")
    if kind == "run":
        value = _run_id(value)
    if kind in {"environment", "tag"}:
        _whole_org_only(operator, kind)
    elif kind == "team":
        team = await session.scalar(
            select(Team.id).where(Team.org_id == operator.org_id, Team.name == value)
        )
        if team is None:
            raise NotFound("team_not_found", f"This org has no team {value!r}.")
        operator.check_teams([team], "controls")
    elif not operator.whole_org:
        operator.check_teams([await _team_of(session, operator.org_id, kind, value)], "controls")
    return ControlScope(kind=kind, value=value)


async def _team_of(
    session: AsyncSession, org_id: uuid.UUID, kind: ScopeKind, value: str
) -> uuid.UUID | None:
    """The team of the agent named ``value`` (kind ``agent``) or of the run ``value``'s agent."""
    name = value
    if kind == "run":
        found = await session.scalar(
            select(Run.agent).where(Run.org_id == org_id, Run.id == uuid.UUID(value))
        )
        if found is None:
            raise NotFound("run_not_found", f"This org has no run {value!r}.")
        name = found
    agent = await session.scalar(select(Agent).where(Agent.org_id == org_id, Agent.name == name))
    if agent is None:
        raise NotFound("agent_not_found", f"This org has no agent {name!r}.")
    return agent.team_id


def _whole_org_only(operator: Operator, kind: str) -> None:
    if not operator.whole_org:
        raise Forbidden(
            "not_your_team",
            f"A control on a{'n' if kind[0] in 'aeiou' else ''} {kind} reaches beyond your "
            "teams: set it on your teams, their agents or their runs.",
        )


def _run_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Invalid("invalid_scope", "A run scope's value is the run's id (a UUID).") from None


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not 1 <= len(reason) <= 1024:
        raise Invalid("invalid_reason", "Say why, in 1 to 1,024 characters.")
    return reason


def _expiry(expires_at: dt.datetime | None, duration: float | None) -> dt.datetime | None:
    if expires_at is not None and duration is not None:
        raise Invalid("invalid_expiry", "Give `expires_at` or `duration`, not both.")
    if duration is not None:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=duration)
    return expires_at


def _scope_of(row: ControlRow) -> ScopeRequest:
    return ScopeRequest(kind=row.scope_kind, value=Text(row.scope_value) or None)  # type: ignore[arg-type]


async def _row(session: AsyncSession, org_id: uuid.UUID, control_id: uuid.UUID) -> ControlRow:
    row = await session.get(ControlRow, (org_id, control_id))
    if row is None:
        raise NotFound("control_not_found", f"This org has no control {str(control_id)!r}.")
    return row


async def _record(
    session: AsyncSession,
    operator: Operator,
    action: str,
    row: ControlRow,
    before: dict[str, Any] | None,
) -> None:
    await audit.record(
        session,
        operator.org_id,
        operator.audit,
        action,
        target_type="control",
        target_id=row.id,
        before=before,
        after=_snapshot(row),
    )


def _snapshot(row: ControlRow) -> dict[str, Any]:
    return {
        "scope": {"kind": row.scope_kind, "value": row.scope_value or None},
        "state": row.state,
        "reason": row.reason,
        "actor": row.actor,
        "version": row.version,
        "expires_at": None if row.expires_at is None else row.expires_at.isoformat(),
        "pause_timeout": row.pause_timeout,
    }


async def _commit(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:  # the same scope, set concurrently by another change
        await session.rollback()
        raise Conflict(
            "control_conflict", "Another change set this scope at the same time; retry."
        ) from None


async def _notify(derived: DerivedWork | None, payload: Mapping[str, Any]) -> None:
    """Hand the notice to derived work; the change is committed whatever happens to it."""
    if derived is None:
        return
    try:
        await derived.enqueue(CONTROL_CHANGED, payload)
    except Exception:
        logger.exception("controls: the control-changed notice was not handed over")
