"""The agents page: the registry with its filters, and bulk pause, kill and resume.

The list is :func:`~agentops_server.services.governance.agents.list_agents` with the filters
of ``GET /api/v1/agents``; a bulk change is
:func:`~agentops_server.services.governance.controls.set_bulk`, as ``POST
/api/v1/controls/bulk`` calls it: one control per selected agent, with the reason given.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.api.v1.actors import actor_of
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.refusals import Invalid, Refused
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.governance import controls
from agentops_server.services.governance.agents import ENVIRONMENTS, AgentFilter, list_agents
from agentops_server.services.governance.controls import BulkControl, ControlsChanged
from agentops_server.services.governance.operators import operator_of
from agentops_server.web.forms import form_of, validated
from agentops_server.web.pages import done, page

__all__ = ["AgentPages"]

PATH = "/agents"
FILTERS = ("tag", "environment", "team_id", "status")
STATUSES = ("active", "paused", "killed", "archived")
BULK_STATES = {"pause": "paused", "kill": "killed", "resume": "active"}


class AgentPages(Controller):
    """``/agents``: read with ``agents:read``; bulk controls with ``controls:write``."""

    @get(PATH, guards=[requires(Permission.AGENTS_READ)])
    async def agents_page(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Any]:
        """The org's agents matching the filters of the query string."""
        return await _render(request, db_session)

    @post(PATH + "/bulk", guards=[requires(Permission.CONTROLS_WRITE)])
    async def bulk_control(
        self,
        request: Request[Principal, Principal, Any],
        db_session: NamedDependency[AsyncSession],
        derived_work: NamedDependency[DerivedWork],
        controls_changed: NamedDependency[ControlsChanged],
    ) -> Response[Any]:
        """Pause, kill or resume the selected agents, with a reason."""
        form = await form_of(request)
        action = (form.get("action") or [""])[0]
        try:
            if action not in BULK_STATES:
                raise Invalid("invalid_form", "Choose pause, kill or resume.")
            if not form.get("agent"):
                raise Invalid("invalid_selection", "Select at least one agent.")
            wanted = validated(
                BulkControl,
                {
                    "state": BULK_STATES[action],
                    "reason": (form.get("reason") or [""])[0],
                    "agents": form["agent"],
                },
            )
            operator = await operator_of(db_session, request.auth, actor_of(request))
            await controls.set_bulk(db_session, operator, wanted, derived_work)
        except Refused as exc:
            return await _render(request, db_session, exc)
        await controls_changed(operator.org_id)
        return done(PATH, "agents_controlled")


def _name(team: tuple[object, str]) -> str:
    return team[1]


async def _render(
    request: Request[Principal, Principal, Any],
    db_session: AsyncSession,
    refusal: Refused | None = None,
) -> Response[Any]:
    if refusal is not None:
        await db_session.rollback()
    org_id = request.auth.org_id
    chosen = {key: request.query_params.get(key) or None for key in FILTERS}
    try:
        where = validated(AgentFilter, {k: v for k, v in chosen.items() if v})
    except Invalid as exc:
        refusal, where = refusal or exc, AgentFilter()
    everyone = await list_agents(db_session, org_id)
    shown = await list_agents(db_session, org_id, where)
    teams = sorted({(a.team_id, a.team or "") for a in everyone.items if a.team_id}, key=_name)
    tags = sorted({tag for agent in everyone.items for tag in agent.tags})
    response = await page(
        request,
        db_session,
        "agents.html",
        agents=shown.items,
        chosen=chosen,
        teams=teams,
        tags=tags,
        environments=ENVIRONMENTS,
        statuses=STATUSES,
        error=refusal,
    )
    response.status_code = refusal.status if refusal else 200
    return response
