"""Who changes the registry and the controls: the audit actor, the name controls carry, and
the teams they are limited to.

Owners, admins and admin keys act on the whole org. People below admin (team leads for
controls; team leads and members for agents) act within the teams they belong to, as for
moving agents between teams (docs/permissions.md): refused with ``not_your_team`` beyond.
The CLI acts for the org (``cli``), and automatic changes as ``system``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.db.models import User
from agentops_server.refusals import Forbidden
from agentops_server.security.permissions import Role
from agentops_server.security.principal import Principal
from agentops_server.services.audit import SYSTEM, Actor

__all__ = ["Operator", "operator_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class Operator:
    """One caller changing an org's agents or controls."""

    org_id: uuid.UUID
    audit: Actor
    """Who the audit log names."""
    name: str
    """Who a control says set it: a person's email, ``api_key:<id>``, ``cli`` or ``system``."""
    teams: frozenset[uuid.UUID] | None = None
    """The teams the operator is limited to; None: the whole org."""

    @classmethod
    def cli(cls, org_id: uuid.UUID) -> Operator:
        """``agentops-hub controls``, acting for the whole org."""
        return cls(org_id, SYSTEM, "cli")

    @property
    def whole_org(self) -> bool:
        """Whether the operator may act on every agent and scope of the org."""
        return self.teams is None

    def check_teams(
        self, team_ids: Iterable[uuid.UUID | None], what: str, *, no_team: bool = False
    ) -> None:
        """Refuse (``not_your_team``) unless every one of ``team_ids`` is the operator's (or,
        with ``no_team``, None), for an operator limited to teams."""
        allowed: set[uuid.UUID | None] = {None} if no_team else set()
        if self.teams is not None and not set(team_ids) <= allowed | self.teams:
            raise Forbidden("not_your_team", f"You may change {what} of your own teams only.")


async def operator_of(session: AsyncSession, principal: Principal, actor: Actor) -> Operator:
    """The operator behind a request's ``principal``."""
    if principal.kind == "user":
        user = await session.get(User, principal.user_id)
        name = user.email if user is not None else f"user:{principal.user_id}"
    else:
        name = f"api_key:{principal.key_id}"
    limited = principal.role is not None and principal.role.rank > Role.ADMIN.rank
    return Operator(principal.org_id, actor, name, principal.team_ids if limited else None)
