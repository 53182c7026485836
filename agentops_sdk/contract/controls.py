"""Emergency controls: what the hub tells every SDK of an org about pausing and killing.

A :class:`Control` sets a state (``paused`` or ``killed``; ``active`` lifts an earlier one) at a
scope: the whole org, an environment, a team, a tag, one agent, or one run. The hub serves an
org's controls as one :class:`ControlSet` (``GET /api/v1/controls``, with an ETag; pushed on
``GET /api/v1/stream`` as a ``controls`` event), together with what the SDK cannot know by
itself about its agents: their team, tags and enabled environments (:class:`AgentProfile`).

The effective state of a call is the strictest of every live control whose scope applies to it
(killed > paused > active): :func:`effective_control`, shared by the SDK (which compiles it into
a per-call lookup) and the hub (which shows an agent's state). A control past its
``expires_at`` no longer applies. Scope matching:

- ``org``: every call;
- ``environment``: the SDK's ``environment`` option;
- ``team``: the agent's team in the hub's registry (:class:`AgentProfile`);
- ``tag``: a tag of the call's run, or of the agent in the registry;
- ``agent``: the run's agent name;
- ``run``: the run's id.

A ``paused`` control holds a new call for up to ``pause_timeout`` seconds waiting for the pause
to be lifted, then refuses it with ``AgentPaused``; 0 refuses at once. ``killed`` refuses every
new call with ``AgentKilled`` and cancels streaming LLM calls in flight.

An agent whose registry profile lists the environments it is enabled for is killed in every
other one (:meth:`ControlSet.environment_kill`): a run reported from such an environment is
refused before its first call, as the strictest of controls.

This module is pure (pydantic models and functions): no I/O, no SDK runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Final, Literal, get_args
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CONTROL_STATES",
    "SCOPE_KINDS",
    "STREAM_EVENT_KINDS",
    "AgentProfile",
    "Control",
    "ControlScope",
    "ControlSet",
    "ControlState",
    "ScopeKind",
    "StreamEventKind",
    "effective_control",
    "strictness",
]

ControlState = Literal["active", "paused", "killed"]
CONTROL_STATES: Final[tuple[ControlState, ...]] = get_args(ControlState)
ScopeKind = Literal["org", "environment", "team", "tag", "agent", "run"]
SCOPE_KINDS: Final[tuple[ScopeKind, ...]] = get_args(ScopeKind)

StreamEventKind = Literal["controls", "heartbeat", "resync"]
"""The kinds of event on ``GET /api/v1/stream``. ``controls``: the org's new :class:`ControlSet`
(its data); ``heartbeat``: nothing changed (every 15 s, so proxies and clients know the stream
is alive); ``resync``: the client fell behind and must fetch the state again. Later issues add
their own kinds (policies, approvals, budgets, notifications)."""
STREAM_EVENT_KINDS: Final[tuple[StreamEventKind, ...]] = get_args(StreamEventKind)

_STRICTNESS: Final = {"active": 0, "paused": 1, "killed": 2}

Text = Annotated[str, Field(max_length=1024)]
Name = Annotated[str, Field(min_length=1, max_length=256)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControlScope(_Wire):
    """Where a control applies: ``kind`` and, for every kind but ``org``, its ``value`` (an
    environment, a team name, a tag, an agent name, or a run id)."""

    kind: ScopeKind
    value: Name | None = None

    def applies_to(
        self,
        *,
        agent: str,
        environment: str,
        tags: tuple[str, ...],
        run_id: str | None,
        profile: AgentProfile | None,
    ) -> bool:
        """Whether a call with these facts falls in this scope."""
        kind, value = self.kind, self.value
        if kind == "org":
            return True
        if kind == "environment":
            return value == environment
        if kind == "agent":
            return value == agent
        if kind == "run":
            return run_id is not None and value == run_id
        if kind == "team":
            return profile is not None and profile.team == value
        return value is not None and (
            value in tags or (profile is not None and value in profile.tags)
        )


class Control(_Wire):
    """One control: a state set at a scope, by someone, for a reason, maybe for a while."""

    id: UUID
    scope: ControlScope
    state: ControlState
    reason: Text
    actor: Text
    """Who set it: a user's email, ``cli`` (``agentops-hub controls``), or ``system`` (an
    automatic pause, e.g. by a budget)."""
    version: int = Field(ge=1)
    """Bumped on every change of this control."""
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    """When the control stops applying on its own (a pause for 30 minutes); None: until changed."""
    pause_timeout: float = Field(default=0.0, ge=0.0, le=3600.0)
    """For ``paused``: how long a new call waits for the pause to be lifted before it fails with
    ``AgentPaused``; 0 fails at once."""

    def live(self, now: datetime) -> bool:
        """Whether the control still applies at ``now``."""
        return self.state != "active" and (self.expires_at is None or now < self.expires_at)


class AgentProfile(_Wire):
    """What the hub's registry knows of one agent that the SDK needs to match scopes."""

    name: Name
    team: Name | None = None
    tags: tuple[Name, ...] = ()
    environments: tuple[str, ...] = ()
    """The environments the agent is enabled for; empty: every one."""
    archived: bool = False

    def refuses(self, environment: str) -> bool:
        """Whether the agent may not run in ``environment`` (it is enabled for others only)."""
        return bool(self.environments) and environment not in self.environments


class ControlSet(_Wire):
    """An org's controls and agent profiles, as the hub serves them to its SDKs."""

    org_id: UUID
    version: int = Field(ge=0)
    """The org's control version: bumped on every change of any of its controls or profiles."""
    controls: tuple[Control, ...] = ()
    agents: tuple[AgentProfile, ...] = ()
    generated_at: datetime

    @property
    def etag(self) -> str:
        """The ETag the hub serves this set with (and an SDK's ``If-None-Match``)."""
        return f'"{self.org_id}-{self.version}"'

    def profile(self, agent: str) -> AgentProfile | None:
        """The registry's profile of ``agent``, if the hub knows it."""
        return next((profile for profile in self.agents if profile.name == agent), None)

    def environment_kill(self, agent: str, environment: str) -> Control | None:
        """The control the registry itself sets on ``agent`` in ``environment`` when the agent
        is not enabled for it: killed there, whatever else applies (None: it may run)."""
        profile = self.profile(agent)
        if profile is None or not profile.refuses(environment):
            return None
        return Control(
            id=uuid5(self.org_id, f"environment:{agent}:{environment}"),
            scope=ControlScope(kind="agent", value=agent),
            state="killed",
            reason=f"{agent} is not enabled for the {environment} environment "
            f"(enabled: {', '.join(profile.environments)})",
            actor="registry",
            version=max(self.version, 1),
            created_at=self.generated_at,
            updated_at=self.generated_at,
        )


def strictness(state: ControlState) -> int:
    """Order of states: active 0 < paused 1 < killed 2."""
    return _STRICTNESS[state]


def effective_control(
    controls: Sequence[Control],
    *,
    agent: str,
    environment: str,
    tags: Iterable[str],
    run_id: str | None,
    profile: AgentProfile | None,
    now: datetime,
) -> Control | None:
    """The strictest live control that applies to a call with these facts; None: active.

    Between two equally strict controls the one set last wins (its reason is the freshest).
    """
    tags = tuple(tags)
    chosen: Control | None = None
    for control in controls:
        if not control.live(now) or not control.scope.applies_to(
            agent=agent, environment=environment, tags=tags, run_id=run_id, profile=profile
        ):
            continue
        if chosen is None or (strictness(control.state), control.updated_at) > (
            strictness(chosen.state),
            chosen.updated_at,
        ):
            chosen = control
    return chosen
