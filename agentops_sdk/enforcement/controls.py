"""The controls stage: the hub's pause and kill, obeyed before every call.

The hub sends an org's emergency controls as one
:class:`~agentops_sdk.contract.controls.ControlSet` (topic ``controls`` of the hub link). The
:class:`KillSwitch` stage compiles each new set once: its controls ranked, then, per agent on
first use, the strictest control that applies whatever the call (org, environment, team, agent,
and tags the registry gives the agent), plus two small maps for what only the call knows (the
tags of its span and run, its run id; the run's part is kept per run). A call then costs an
identity check, a dict lookup, one lookup per tag of the call when tag controls exist, a read
of the monotonic clock (staleness) and, when one of the controls over it expires, of the wall
clock (the lookup is rebuilt once it has).
The result is the same as :func:`~agentops_sdk.contract.controls.effective_control`: the
strictest live control (killed > paused > active), the last set winning a tie.

- ``killed``: the call is refused with ``AgentKilled`` before it runs; a stream in flight stops
  at its next chunk (:meth:`KillSwitch.kill_of`, read by the integrations).
- ``paused``: the call waits up to the control's ``pause_timeout`` for the pause to be lifted
  (a :class:`~agentops_sdk.enforcement.Wait` the hub link settles on the first snapshot that
  lifts it, or when the pause expires), then runs; or, past the timeout, is refused with
  ``AgentPaused``. A ``pause_timeout`` of 0 refuses at once.
- Staleness: when the hub has not been heard from (an update, a heartbeat, a poll answered 304)
  for ``max_staleness`` seconds, ``on_stale`` applies: ``continue`` under the last controls,
  ``pause`` (``AgentPaused``) or ``stop`` (``AgentKilled``) until it is heard again. Going stale
  and coming back are logged once each, when a call or :meth:`KillSwitch.status` notices.

Each refusal's decision names the control (``rule``: its id; ``reason``: the operator's) and
carries its scope, state, actor and version, so the hub shows who stopped what and why.
Nothing here imports pydantic: the sets arrive parsed, on the hub link's thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from time import monotonic_ns, time_ns
from typing import TYPE_CHECKING, ClassVar, Final, Literal, Protocol

from agentops_sdk.contract.decisions import Decision, StageName
from agentops_sdk.contract.errors import AgentKilled, AgentPaused, EnforcementError
from agentops_sdk.contract.ids import format_id, parse_id
from agentops_sdk.enforcement.stage import Stage, Wait

if TYPE_CHECKING:
    from agentops_sdk.config import OnStale
    from agentops_sdk.contract.controls import Control, ControlSet
    from agentops_sdk.enforcement.call import CallInfo
    from agentops_sdk.enforcement.link import HubLink, Snapshot

__all__ = ["OFF", "TOPIC", "CompiledControls", "ControlsSource", "ControlsStatus", "KillSwitch"]

logger = logging.getLogger("agentops_sdk")

TOPIC: Final = "controls"
"""The hub link's topic that carries the org's ``ControlSet``."""

ControlsSource = Literal["stream", "poll", "disk", "none"]
"""Where the SDK's copy of the controls was last confirmed: the hub's event stream, a poll of
``GET /api/v1/controls``, the file an earlier process saved, or nowhere yet."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_VIEWS: Final = 1024
"""Lookups kept per control set (one per agent name seen): a bound, not a goal."""


@dataclasses.dataclass(frozen=True, slots=True)
class ControlsStatus:
    """What ``agentops.controls_status()`` reports about the SDK's copy of the hub's controls."""

    enabled: bool
    """Whether this client obeys controls (a hub URL, an API key, and ``controls`` on)."""
    source: ControlsSource
    """Where the copy was last confirmed."""
    age: float | None
    """Seconds since then; None when nothing was ever heard."""
    version: int | None
    """The org's control version of the copy (``ControlSet.version``); None without one."""
    stale: bool
    """Whether the copy (or the silence since the client started) is older than
    ``max_staleness``, so that ``on_stale`` applies."""


OFF: Final = ControlsStatus(enabled=False, source="none", age=None, version=None, stale=False)
"""The status of a client that does not obey controls (or of no client)."""


class KillSwitch(Stage):
    """The ``controls`` stage: refuses or holds calls as the hub's emergency controls say.

    ``client.controls`` when the client has a hub URL and an API key and ``controls`` is on;
    it reads the ``controls`` topic of ``link``.
    """

    name: ClassVar[StageName] = "controls"
    error: ClassVar[type[EnforcementError]] = AgentKilled
    topics: ClassVar[frozenset[str]] = frozenset({TOPIC})

    def __init__(
        self, link: HubLink, *, max_staleness: float = 60.0, on_stale: OnStale = "continue"
    ) -> None:
        self.link = link
        self.max_staleness = max_staleness
        self.on_stale: OnStale = on_stale
        self._started = monotonic_ns()
        self._state = _State(
            None, CompiledControls(None), self._started, self._started + self._stale_after()
        )
        self._stale = False
        self._transition = threading.Lock()

    # -- before a call ------------------------------------------------------------------------

    def before(self, call: CallInfo) -> Decision | Wait | None:
        """Refuse, hold or pass ``call`` as the strictest control over it says."""
        snapshot = self.link.snapshot
        state = self._state
        if state.snapshot is not snapshot:
            state = self._catch_up(snapshot)
        now = monotonic_ns()
        compiled = state.compiled
        entry = compiled.match(call.span, now) if compiled.any else None
        if now > state.stale_at:
            stale = self._gone_stale(state)
            if stale is not None and (entry is None or entry.strictness < _STOP_RANK[stale]):
                return _STALE[stale]
        elif self._stale:
            self._heard_again()
        if entry is None:
            return None
        if entry.killed or entry.control.pause_timeout == 0:
            return entry.decision
        return self._hold(call, entry)

    def kill_of(self, call: CallInfo) -> Decision | None:
        """The kill over ``call`` now, if any: a stream checks it between chunks (cheap while the
        org has no kill in force)."""
        snapshot = self.link.snapshot
        state = self._state
        if state.snapshot is not snapshot:
            state = self._catch_up(snapshot)
        if not state.compiled.kills:
            return None
        entry = state.compiled.match(call.span)
        return entry.decision if entry is not None and entry.killed else None

    def refusal(self, call: CallInfo, decision: Decision) -> EnforcementError:
        """``AgentKilled`` for a kill (or ``on_stale="stop"``), ``AgentPaused`` for a pause."""
        details = decision.details
        state = details.get("state")
        error = AgentKilled if state == "killed" else AgentPaused
        scope = details.get("scope")
        if isinstance(scope, Mapping):
            kind, value = scope.get("kind"), scope.get("value")
            where = kind if value is None else f"{kind} {value}"
            message = f"{call.agent} is {state} by the hub ({where}, by {details.get('actor')})"
            if decision.reason:
                message = f"{message}: {decision.reason}"
        else:
            message = decision.reason or f"{call.agent} is {state}"
        return error(message, rule=decision.rule, decision=decision)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> ControlsStatus:
        """The copy's source, age, version, and whether it is stale."""
        snapshot = self.link.snapshot
        state = self._catch_up(snapshot) if self._state.snapshot is not snapshot else self._state
        now = monotonic_ns()
        stale = now > state.stale_at
        if stale:
            self._gone_stale(state)
        elif self._stale:
            self._heard_again()
        controls = state.compiled.controls
        heard = snapshot.received_at is not None
        return ControlsStatus(
            enabled=True,
            source=_SOURCES.get(snapshot.via, "stream") if heard else "none",
            age=round((now - state.fresh_at) / 1e9, 3) if heard else None,
            version=None if controls is None else controls.version,
            stale=stale,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _stale_after(self) -> int:
        return round(self.max_staleness * 1e9)

    def _catch_up(self, snapshot: Snapshot) -> _State:
        """The state for a new snapshot; compiles its control set if the set is new too."""
        controls = snapshot.get(TOPIC)
        compiled = self._state.compiled
        if controls is not compiled.controls:
            compiled = CompiledControls(controls)
        received = snapshot.received_at
        fresh_at = self._started if received is None else round(received * 1e9)
        state = _State(snapshot, compiled, fresh_at, fresh_at + self._stale_after())
        self._state = state  # one store: readers see the old state or this one
        return state

    def _hold(self, call: CallInfo, entry: _Entry) -> Wait:
        """Make ``call`` wait for the pause of ``entry`` to be lifted, up to its timeout."""
        lifted = Decision(
            "allow",
            stage="controls",
            rule=entry.decision.rule,
            reason="the pause was lifted",
            details=entry.decision.details,
        )

        def settled(snapshot: Snapshot) -> Decision | None:
            state = self._state if self._state.snapshot is snapshot else self._catch_up(snapshot)
            compiled = state.compiled
            now = compiled.match(call.span) if compiled.any else None
            if now is None:
                return lifted
            return now.decision if now.killed else None

        if entry.expires_ns is not None:
            self._recheck_at(entry.expires_ns)
        timeout = entry.control.pause_timeout
        return Wait(self.link.watch(settled), timeout=timeout, on_timeout=entry.decision)

    def _recheck_at(self, expires_ns: int) -> None:
        """Have the link's checks run again once ``expires_ns`` has passed (a pause that ends
        by itself lifts no snapshot)."""
        delay = (expires_ns - time_ns()) / 1e9
        if delay <= 0:
            self.link.recheck()
            return
        timer = threading.Timer(delay, self._recheck_at, (expires_ns,))
        timer.daemon = True
        timer.start()

    def _gone_stale(self, state: _State) -> Literal["pause", "stop"] | None:
        """The copy is older than ``max_staleness``: log it once; what ``on_stale`` asks."""
        if not self._stale and self._transition.acquire(blocking=False):
            try:
                if not self._stale:
                    self._stale = True
                    logger.warning(
                        "agentops: no news from the hub for %.1f s (max_staleness %g s); %s",
                        (monotonic_ns() - state.fresh_at) / 1e9,
                        self.max_staleness,
                        _ON_STALE_EFFECT[self.on_stale],
                    )
            finally:
                self._transition.release()
        on_stale = self.on_stale
        return None if on_stale == "continue" else on_stale

    def _heard_again(self) -> None:
        if self._stale and self._transition.acquire(blocking=False):
            try:
                if self._stale:
                    self._stale = False
                    logger.info("agentops: the hub is heard again; its controls are current")
            finally:
                self._transition.release()


# -- compiled control sets ------------------------------------------------------------------------


class _Entry:
    """One control of a set, ranked among the others, with the decision it makes."""

    __slots__ = ("control", "decision", "expires_ns", "killed", "rank", "strictness")

    def __init__(self, control: Control, rank: int, strictness: int) -> None:
        self.control = control
        self.rank = rank
        """Its place among the set's controls: strictest, then latest, then first, is highest."""
        self.strictness = strictness
        self.killed = control.state == "killed"
        self.expires_ns = None if control.expires_at is None else _ns(control.expires_at)
        """When it expires, in ``time.time_ns()`` terms."""
        scope = control.scope
        self.decision = Decision(
            "deny",
            stage="controls",
            rule=str(control.id),
            reason=control.reason,
            details={
                "state": control.state,
                "scope": {"kind": scope.kind, "value": scope.value},
                "actor": control.actor,
                "version": control.version,
                "expires_at": None
                if control.expires_at is None
                else control.expires_at.isoformat(),
                "pause_timeout": control.pause_timeout,
            },
        )


class _View:
    """The controls of a set that can apply to one agent in ``environment``, live when it was
    built, until ``until`` (``time.time_ns()`` when the first of them expires; None: never)."""

    __slots__ = (
        "by_run",
        "by_tag",
        "check_at",
        "dynamic",
        "environment",
        "fixed",
        "last_call",
        "last_run",
        "until",
    )

    def __init__(
        self,
        environment: str,
        fixed: _Entry | None,
        by_tag: dict[str, _Entry],
        by_run: dict[int, _Entry],
        until: int | None,
    ) -> None:
        self.environment = environment
        self.fixed = fixed
        """The strictest control that applies whatever the call's tags and run."""
        self.by_tag = by_tag
        """Controls on a tag the agent's profile lacks, stricter than ``fixed``, by tag."""
        self.by_run = by_run
        """Controls on one run, stricter than ``fixed``, by run id."""
        self.dynamic = bool(by_tag or by_run)
        """Whether the call's tags or run can change the answer (else it is ``fixed``)."""
        self.until = until
        self.check_at = 0 if until is None else monotonic_ns() + until - time_ns()
        """When, by ``monotonic_ns()``, ``until`` comes: calls look at the wall clock from then."""
        self.last_run: tuple[object, _Entry | None] = (None, None)
        """The run last matched, and the strictest control over it before its call's tags."""
        self.last_call: tuple[object, object, _Entry | None] = (None, None, None)
        """The run and the tags (a decorator's own tuple) of the call last matched, and the
        answer: the next call of the same function in the same run gets it at once."""


class CompiledControls:
    """A control set compiled for the question every call asks: which live control is the
    strictest over it. Ranked once; a :class:`_View` per agent is made on first use and remade
    when a control in it expires.

    :meth:`match` answers for a call's span, now; :meth:`effective` for any facts at any time,
    what :func:`~agentops_sdk.contract.controls.effective_control` answers.
    """

    __slots__ = ("any", "controls", "entries", "kills", "views")

    def __init__(self, controls: ControlSet | None) -> None:
        self.controls = controls
        self.entries: tuple[_Entry, ...] = () if controls is None else _ranked(controls)
        confined = controls is not None and any(profile.environments for profile in controls.agents)
        self.any = bool(self.entries) or confined
        """Whether any control of the set can ever apply (paused or killed, in any scope, or an
        agent's registry profile that keeps it out of some environment)."""
        self.kills = confined or any(entry.killed for entry in self.entries)
        self.views: dict[str, _View] = {}
        """By agent name: a client's runs share one environment."""

    def match(
        self, call: _CallLike, now: int | None = None, clock: Callable[[], int] = time_ns
    ) -> _Entry | None:
        """The strictest control over ``call`` (a span) live now by ``clock``, the wall clock
        the hub writes expiries in. ``now``, the caller's ``monotonic_ns()``, spares reading
        ``clock`` until a control in the lookup may have expired (None reads it when one can).
        """
        run = call.run
        view = self.views.get(run.agent)
        if view is None or view.environment != run.environment:
            view = self._view(run.agent, run.environment, clock())
        elif view.until is not None and (now is None or now >= view.check_at):
            wall, until = clock(), view.until
            if wall >= until:
                view = self._view(run.agent, run.environment, wall)
            elif now is not None:
                view.check_at = now + until - wall  # the two clocks drifted apart: look again
        if not view.dynamic:
            return view.fixed
        tags = call.tags
        last_call = view.last_call
        if last_call[0] is run and last_call[1] is tags:
            return last_call[2]
        # What the run decides (its tags, its id) is the same for each of its calls: kept for
        # the run seen last, in one tuple that threads replace whole.
        last_run, best = view.last_run
        if last_run is not run:
            best = view.fixed
            for tag in run.tags:
                entry = view.by_tag.get(tag)
                if entry is not None and (best is None or entry.rank > best.rank):
                    best = entry
            if view.by_run:
                entry = view.by_run.get(run.id)
                if entry is not None and (best is None or entry.rank > best.rank):
                    best = entry
            view.last_run = (run, best)
        by_tag = view.by_tag
        if by_tag:
            for tag in tags:
                entry = by_tag.get(tag)
                if entry is not None and (best is None or entry.rank > best.rank):
                    best = entry
        view.last_call = (run, tags, best)
        return best

    def effective(
        self,
        *,
        agent: str,
        environment: str,
        tags: tuple[str, ...],
        run_id: int | None,
        now_ns: int,
    ) -> Control | None:
        """The strictest control live at ``now_ns`` (``time.time_ns()``) over a call with these
        facts (``run_id`` as ``Run.id`` holds it); None: nothing applies."""
        if not self.any:
            return None
        facts = _Facts(tags, _RunFacts(agent, environment, (), -1 if run_id is None else run_id))
        entry = self.match(facts, clock=lambda: now_ns)
        return None if entry is None else entry.control

    def _view(self, agent: str, environment: str, now: int) -> _View:
        view = self._build(agent, environment, now)
        if len(self.views) >= _MAX_VIEWS:
            self.views = {}  # swapped, not cleared: readers without a lock keep a whole dict
        self.views[agent] = view
        return view

    def _build(self, agent: str, environment: str, now: int) -> _View:
        """The view of ``agent`` in ``environment`` at ``now`` (``time_ns``)."""
        assert self.controls is not None
        refused = self.controls.environment_kill(agent, environment)
        if refused is not None:  # nothing outranks it: the agent may not run here at all
            return _View(environment, _Entry(refused, len(self.entries), _KILLED), {}, {}, None)
        profile = self.controls.profile(agent)
        fixed: _Entry | None = None
        by_tag: dict[str, _Entry] = {}
        by_run: dict[int, _Entry] = {}
        for entry in self.entries:
            if entry.expires_ns is not None and now >= entry.expires_ns:
                continue
            scope = entry.control.scope
            # With no tags and no run id, the contract's own rule says what applies whatever
            # the call: every scope but a tag the profile lacks and a run.
            if scope.applies_to(
                agent=agent, environment=environment, tags=(), run_id=None, profile=profile
            ):
                fixed = entry  # entries come weakest first
            elif scope.kind == "tag" and scope.value is not None:
                by_tag[scope.value] = entry
            elif scope.kind == "run" and scope.value is not None:
                run_id = _run_id(scope.value)
                if run_id is not None:
                    by_run[run_id] = entry
        if fixed is not None:  # what ``fixed`` outranks can never be the answer
            rank = fixed.rank
            by_tag = {tag: entry for tag, entry in by_tag.items() if entry.rank > rank}
            by_run = {run: entry for run, entry in by_run.items() if entry.rank > rank}
        # The view holds until one of its own controls expires (what a kept control hides
        # matters only once that control is gone).
        kept = [*by_tag.values(), *by_run.values()] + ([] if fixed is None else [fixed])
        until = min((e.expires_ns for e in kept if e.expires_ns is not None), default=None)
        return _View(environment, fixed, by_tag, by_run, until)


class _RunLike(Protocol):
    @property
    def agent(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def id(self) -> int: ...


class _CallLike(Protocol):
    """What matching reads of a call: a span has it all."""

    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def run(self) -> _RunLike: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _RunFacts:
    agent: str
    environment: str
    tags: tuple[str, ...]
    id: int
    """-1 for a call in no run: no run's id."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Facts:
    """A call's facts without a span, for :meth:`CompiledControls.effective`."""

    tags: tuple[str, ...]
    run: _RunFacts


class _State:
    """What the stage derived from one snapshot of the hub link (times in ``monotonic_ns``)."""

    __slots__ = ("compiled", "fresh_at", "snapshot", "stale_at")

    def __init__(
        self,
        snapshot: Snapshot | None,
        compiled: CompiledControls,
        fresh_at: int,
        stale_at: int,
    ) -> None:
        self.snapshot = snapshot
        self.compiled = compiled
        self.fresh_at = fresh_at
        """When the hub last confirmed the copy (or the stage started)."""
        self.stale_at = stale_at
        """When the copy goes stale (``max_staleness`` later)."""


_KILLED: Final = 2
"""The strictness of ``killed`` (``agentops_sdk.contract.controls.strictness``)."""


def _ranked(controls: ControlSet) -> tuple[_Entry, ...]:
    """The set's paused and killed controls, weakest first: by strictness, then by when they
    were set, then the earlier in the set ahead of the later (as ``effective_control`` ranks)."""
    from agentops_sdk.contract.controls import strictness

    candidates = [
        (strictness(control.state), _ns(control.updated_at), -index, control)
        for index, control in enumerate(controls.controls)
        if control.state != "active"
    ]
    candidates.sort(key=lambda candidate: candidate[:3])
    return tuple(
        _Entry(control, rank, level) for rank, (level, _, _, control) in enumerate(candidates)
    )


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (a time without a zone is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND * 1000


def _run_id(text: str) -> int | None:
    """A run scope's id as ``Run.id`` holds it; None if it is not a canonical id (it then
    matches no run, as the string comparison of ``effective_control`` would not)."""
    try:
        number = parse_id(text)
    except ValueError:
        return None
    return number if 0 <= number < 1 << 128 and format_id(number) == text else None


_SOURCES: Final[dict[str | None, ControlsSource]] = {
    "stream": "stream",
    "poll": "poll",
    "disk": "disk",
}
_MICROSECOND: Final = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
_STOP_RANK: Final = {"pause": 1, "stop": 2}
"""How strict each ``on_stale`` refusal is, against a control's strictness."""
_ON_STALE_EFFECT: Final = {
    "continue": "calls go on under the last controls received (on_stale=continue)",
    "pause": "calls are refused with AgentPaused until it is heard again (on_stale=pause)",
    "stop": "calls are refused with AgentKilled until it is heard again (on_stale=stop)",
}


def _stale(state: Literal["paused", "killed"]) -> Decision:
    return Decision(
        "deny",
        stage="controls",
        rule="stale",
        reason="no news from the hub for longer than max_staleness",
        details={"state": state, "stale": True},
    )


_STALE: Final = {"pause": _stale("paused"), "stop": _stale("killed")}
"""The refusals of ``on_stale``."""
