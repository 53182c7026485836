"""``/api/v1/controls``: the org's emergency controls, as its SDKs read them and as operators set
them (see docs/controls.md).

``GET`` answers the org's :class:`~agentops_sdk.contract.controls.ControlSet` with its ``ETag``,
or ``304`` to a matching ``If-None-Match`` (API keys with the ``ingest`` scope may read it: an
SDK polls with its ingest key). The org-wide emergency stop is one call::

    POST /api/v1/controls {"scope": {"kind": "org"}, "state": "killed", "reason": "incident 42"}
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.controls import Control, ControlSet
from agentops_server.api.headers import etag_matches
from agentops_server.api.problems import JSON_BODY_LIMIT, problems
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Conflict, Forbidden, Invalid, NotFound
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import controls
from agentops_server.services.governance.control_sets import current_etag
from agentops_server.services.governance.controls import (
    BulkControl,
    ControlChange,
    ControlList,
    ControlRequest,
    ControlsChanged,
)
from agentops_server.services.governance.operators import operator_of
from agentops_server.values import Text

__all__ = ["ControlController"]

ControlId = Annotated[str, PathParameter(description="The control's id (a UUID).")]

NOT_YOUR_TEAM = Forbidden(
    "not_your_team",
    "a team lead's control outside their teams, their agents and their runs (the org, an "
    "environment or a tag included)",
)
SET_REFUSALS = (
    Invalid("invalid_scope", "no value for `org`, a value for the others, a known environment"),
    Invalid("invalid_reason", "a reason of 1 to 1,024 characters is required"),
    Invalid("invalid_expiry", "both `expires_at` and `duration`"),
    NOT_YOUR_TEAM,
    NotFound("team_not_found", "a team scope names no team of the org"),
    NotFound("agent_not_found", "a team lead's agent scope names no agent of the org"),
    NotFound("run_not_found", "a team lead's run scope names no run of the org"),
    Conflict("control_conflict", "another change set the same scope at the same time"),
)
CONTROL_NOT_FOUND = NotFound("control_not_found", "no such control in this org")


class ControlController(Controller):
    """Reading controls (``controls:read``; API keys with the ``read``, ``controls:read`` or
    ``ingest`` scope) and setting them (``controls:write``). Every change is audited, bumps
    the org's control version, is pushed to its SDKs and notified."""

    path = "/controls"
    tags = ("controls",)
    request_max_body_size = JSON_BODY_LIMIT

    @get(
        "/",
        guards=[requires(Permission.CONTROLS_READ)],
        summary="The org's controls, as its SDKs read them",
        responses={
            304: ResponseSpec(
                None, description="Not modified: `If-None-Match` holds the current ETag."
            )
        },
    )
    async def control_set(
        self, request: Request[Principal, Principal, Any], db_session: NamedDependency[AsyncSession]
    ) -> Response[ControlSet | None]:
        """Every control of the org and the profile of each of its agents, with the org's
        control version; `ETag` is `"<org_id>-<version>"`, and a matching `If-None-Match` is
        answered `304` with no body."""
        org_id = request.auth.org_id
        asked = request.headers.get("if-none-match")
        if asked is not None:
            current = await current_etag(db_session, org_id)
            if etag_matches(asked, current):
                return Response(content=None, status_code=304, headers={"ETag": current})
        found = await controls.load_control_set(db_session, org_id)
        return Response(content=found, headers={"ETag": found.etag})

    @post(
        "/",
        status_code=200,
        guards=[requires(Permission.CONTROLS_WRITE)],
        summary="Set the control of one scope (the org-wide emergency stop included)",
        description=(
            "Sets `state` (`active`, `paused`, `killed`) at `scope`: `org`, `environment`, "
            "`team` (name), `tag`, `agent` (name) or `run` (id), with a `reason`, and "
            "optionally `expires_at` or `duration` (seconds) and `pause_timeout` (seconds a "
            "paused call waits for a resume). One control per scope: setting it again changes "
            'it. Stop everything: `{"scope": {"kind": "org"}, "state": "killed", '
            '"reason": "..."}`. Audited as `control.set`.'
        ),
        responses=problems(*SET_REFUSALS),
    )
    async def set_control(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        controls_changed: NamedDependency[ControlsChanged],
        data: JSONBody[ControlRequest],
    ) -> Control:
        """Set one scope's control."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        control = await controls.set_control(db_session, operator, data, derived_work)
        await controls_changed(operator.org_id)
        return control

    @post(
        "/bulk",
        status_code=200,
        guards=[requires(Permission.CONTROLS_WRITE)],
        summary="Set one control per agent, for many agents at once",
        description=(
            "For `agents` (names) or every agent `filter` matches (the filters of "
            "`GET /api/v1/agents`), in one transaction. Audited as `control.set`, one entry "
            "per agent."
        ),
        responses=problems(
            Invalid("invalid_selection", "neither or both of `agents` and `filter`"),
            *SET_REFUSALS,
        ),
    )
    async def set_bulk(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        controls_changed: NamedDependency[ControlsChanged],
        data: JSONBody[BulkControl],
    ) -> ControlList:
        """Set many agents' controls."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        changed = await controls.set_bulk(db_session, operator, data, derived_work)
        await controls_changed(operator.org_id)
        return changed

    @patch(
        "/{control_id:str}",
        guards=[requires(Permission.CONTROLS_WRITE)],
        summary="Change a control",
        description="A new `reason`, always; the state, expiry or pause timeout given. "
        "Audited as `control.changed`.",
        responses=problems(CONTROL_NOT_FOUND, *SET_REFUSALS[1:4]),
    )
    async def change_control(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        controls_changed: NamedDependency[ControlsChanged],
        control_id: ControlId,
        data: JSONBody[ControlChange],
    ) -> Control:
        """Change the control."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        control = await controls.change_control(
            db_session, operator, _uuid_of(control_id), data, derived_work
        )
        await controls_changed(operator.org_id)
        return control

    @delete(
        "/{control_id:str}",
        guards=[requires(Permission.CONTROLS_WRITE)],
        summary="Clear a control",
        description="Deletes the control (its scope is no longer controlled). Audited as "
        "`control.cleared`, with the reason.",
        responses=problems(CONTROL_NOT_FOUND, SET_REFUSALS[1], NOT_YOUR_TEAM),
    )
    async def clear_control(
        self,
        *,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        controls_changed: NamedDependency[ControlsChanged],
        control_id: ControlId,
        reason: Annotated[Text, QueryParameter(description="Why the control is cleared.")],
    ) -> None:
        """Clear the control."""
        operator = await operator_of(db_session, request.auth, actor_of(request))
        await controls.clear_control(
            db_session, operator, _uuid_of(control_id), reason, derived_work
        )
        await controls_changed(operator.org_id)


def _uuid_of(control_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(control_id)
    except ValueError:
        raise NotFound("control_not_found", f"This org has no control {control_id!r}.") from None
