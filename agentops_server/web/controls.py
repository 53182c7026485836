"""The emergency controls page: the org's state at a glance, the org-wide kill switch and pause,
and controls scoped to an environment, team, tag or agent.

Every change is one :func:`~agentops_server.services.governance.controls.set_control` or
:func:`~agentops_server.services.governance.controls.clear_control`, as ``/api/v1/controls``
calls it: audited, pushed to the SDKs, notified. Stopping or pausing the whole org needs its
confirmation box ticked, so a stray click on a plain form cannot do it.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.controls import Control
from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import controls
from agentops_server.services.governance.agents import ENVIRONMENTS
from agentops_server.services.governance.controls import ControlRequest, ControlsChanged
from agentops_server.services.governance.operators import operator_of
from agentops_server.web.forms import fields_of, validated
from agentops_server.web.pages import done, page

__all__ = ["ControlPages"]

PATH = "/controls"
SCOPED_KINDS = ("environment", "team", "tag", "agent")


class ControlPages(Controller):
    """``/controls``: read with ``controls:read``, change with ``controls:write``."""

    @get(PATH, guards=[requires(Permission.CONTROLS_READ)])
    async def controls_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The org's controls."""
        return await _render(request, db_session)

    @post(PATH, guards=[requires(Permission.CONTROLS_WRITE)])
    async def set_control(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        controls_changed: NamedDependency[ControlsChanged],
    ) -> Response[Any]:
        """Set the control of the org or of one scope."""
        try:
            wanted = _control_request(await fields_of(request))
            operator = await operator_of(db_session, request.auth, actor_of(request))
            await controls.set_control(db_session, operator, wanted, derived_work)
        except Refused as exc:
            return await _render(request, db_session, exc)
        await controls_changed(operator.org_id)
        return done(PATH, "control_set")

    @post(PATH + "/{control_id:uuid}/clear", guards=[requires(Permission.CONTROLS_WRITE)])
    async def clear_control(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        controls_changed: NamedDependency[ControlsChanged],
        control_id: Annotated[uuid.UUID, PathParameter()],
    ) -> Response[Any]:
        """Clear a control (its scope runs again), with a reason."""
        reason = (await fields_of(request)).get("reason", "")
        try:
            operator = await operator_of(db_session, request.auth, actor_of(request))
            await controls.clear_control(db_session, operator, control_id, reason, derived_work)
        except Refused as exc:
            return await _render(request, db_session, exc)
        await controls_changed(operator.org_id)
        return done(PATH, "control_cleared")


def _control_request(fields: dict[str, str]) -> ControlRequest:
    kind = fields.get("scope_kind", "org")
    if kind == "org" and fields.get("state") != "active" and fields.get("confirm") != "yes":
        raise Invalid(
            "confirmation_required",
            "Tick the confirmation box to stop or pause every agent of the org.",
        )
    minutes = fields.get("duration_minutes", "")
    body: dict[str, Any] = {
        "scope": {"kind": kind, "value": fields.get("scope_value") or None},
        "state": fields.get("state", ""),
        "reason": fields.get("reason", ""),
    }
    if minutes:
        body["duration"] = _minutes(minutes) * 60
    return validated(ControlRequest, body)


def _minutes(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise Invalid("invalid_form", "The duration is a number of minutes.") from None


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    found = await controls.load_control_set(db_session, request.auth.org_id)
    org_wide = next((c for c in found.controls if c.scope.kind == "org"), None)
    scoped: list[Control] = sorted(
        (c for c in found.controls if c.scope.kind != "org"),
        key=lambda c: (c.scope.kind, c.scope.value or ""),
    )
    response = await page(
        request,
        db_session,
        "controls.html",
        org_control=org_wide,
        scoped=scoped,
        scoped_kinds=SCOPED_KINDS,
        environments=ENVIRONMENTS,
        agent_names=sorted(profile.name for profile in found.agents),
        error=refusal,
    )
    response.status_code = refusal.status if refusal else 200
    return response
