"""Every domain's derived-work tasks, registered from one place.

The hub (``create_app``) and every ``agentops-hub worker`` call :func:`register_tasks` on their
:class:`~agentops_server.backends.derived_work.DerivedWork`, so the tasks the hub records and
enqueues are the ones the workers run, and the embedded runner runs the same functions. A domain
adds its registrar to :data:`REGISTRARS`: a function that registers its tasks, built from the
:class:`TaskContext` (the process's engine, settings and mailer)::

    def register_tasks(derived: DerivedWork, context: TaskContext) -> None:
        async def notify(payload: Mapping[str, Any]) -> None: ...
        derived.register("governance.control_changed", notify)

Tasks may run more than once for one notice (a retry, a sweep after an outage): they must be
idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.backends.derived_work import DerivedWork, Schedule
from agentops_server.backends.live import LiveUpdates
from agentops_server.backends.mailer import Mailer
from agentops_server.backends.stats_cache import StatsCache, create_stats_cache
from agentops_server.services.analytics.rollups import RollupTasks
from agentops_server.services.budgets.alerts import BudgetTasks
from agentops_server.services.budgets.state import Clock, utc_now
from agentops_server.services.costs import totals
from agentops_server.services.governance.approval_tasks import ApprovalTasks
from agentops_server.services.notifications.announcements import Notifier
from agentops_server.services.telemetry import partitions, retention
from agentops_server.services.telemetry.ingest import EVENTS_COMMITTED
from agentops_server.services.telemetry.live_runs import RunAnnouncer
from agentops_server.settings import Settings

__all__ = [
    "MAX_MERGED_IDS",
    "REGISTRARS",
    "Registrar",
    "TaskContext",
    "merge_events_committed",
    "register_tasks",
]


@dataclasses.dataclass(frozen=True, slots=True)
class TaskContext:
    """What tasks get from the process that runs them: its tenant-isolated database engine
    (tasks act for the org their payload names), settings and mailer, the agent stats cache,
    and its live updates (to announce passing events on the org streams; a worker's reach them
    through Redis)."""

    engine: AsyncEngine
    settings: Settings
    mailer: Mailer
    stats_cache: StatsCache | None = None
    """The cache rollups make stale (None: one on Redis or in this process, from settings)."""
    live: LiveUpdates | None = None
    clock: Clock = utc_now
    """The time budgets' windows and alerts are read at (a test's clock, in tests)."""


Registrar = Callable[[DerivedWork, TaskContext], None]
"""Registers one domain's tasks."""


def _notifications(derived: DerivedWork, context: TaskContext) -> None:
    Notifier(context.engine, context.settings, context.mailer, derived).register()


def _approvals(derived: DerivedWork, context: TaskContext) -> None:
    notifier = Notifier(context.engine, context.settings, context.mailer, derived)
    ApprovalTasks(context.engine, notifier).register(derived)


def _costs(derived: DerivedWork, context: TaskContext) -> None:
    if context.settings.pricing:  # with pricing off, nothing is priced and nothing totalled
        totals.register(derived, context.engine)


def _budgets(derived: DerivedWork, context: TaskContext) -> None:
    notifier = Notifier(context.engine, context.settings, context.mailer, derived)
    BudgetTasks(context.engine, notifier, derived, context.clock, context.live).register()


def _analytics(derived: DerivedWork, context: TaskContext) -> None:
    if not context.settings.rollups:  # off: analytics read no new rollups (for comparison)
        return
    cache = context.stats_cache or create_stats_cache(context.settings)
    RollupTasks(context.engine, cache.forget).register(derived)


def _retention(derived: DerivedWork, context: TaskContext) -> None:
    settings = context.settings
    retention.register(derived, context.engine, settings.database_url)
    partitions.register(derived, settings.database_url)
    if settings.upkeep:  # the hub's own schedule (decision 37); off: `agentops-hub jobs`
        derived.schedule(Schedule(partitions.PARTITIONS, settings.upkeep_partitions, at_start=True))
        derived.schedule(Schedule(retention.RETENTION_DUE, settings.upkeep_retention))


def _live_runs(derived: DerivedWork, context: TaskContext) -> None:
    if context.live is not None:
        RunAnnouncer(context.engine, context.live).register(derived)


REGISTRARS: tuple[Registrar, ...] = (
    _notifications,
    _approvals,
    _costs,
    _budgets,
    _analytics,
    _live_runs,
    _retention,
)
"""Every domain's registrar."""


def register_tasks(
    derived: DerivedWork, context: TaskContext, *, extra: Sequence[Registrar] = ()
) -> None:
    """Register every domain's tasks, then ``extra`` ones (``agentops-hub worker --tasks``).

    Events-committed notices may be merged while they wait (:func:`merge_events_committed`):
    every task of that notice works on its sets of ids, so one run can cover many commits."""
    derived.coalesce(EVENTS_COMMITTED, merge_events_committed)
    for registrar in (*REGISTRARS, *extra):
        registrar(derived, context)


MAX_MERGED_IDS = 5_000
"""The most span ids (or run ids) one merged events-committed notice holds."""
_ID_FIELDS = ("run_ids", "span_ids", "call_run_ids", "span_run_ids")


def merge_events_committed(
    waiting: Mapping[str, Any], new: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """Two events-committed notices of one org as one (their ids united, the later commit
    time); None for two orgs, or when the ids would pass :data:`MAX_MERGED_IDS`."""
    if waiting.get("org_id") != new.get("org_id"):
        return None
    merged: dict[str, Any] = {**waiting, **new}
    for field in _ID_FIELDS:
        ids = sorted({*waiting.get(field, ()), *new.get(field, ())})
        if len(ids) > MAX_MERGED_IDS:
            return None
        merged[field] = ids
    # A notice of an older hub owes totals to every run it touched.
    owed = sorted({*totals.owed_run_ids(waiting), *totals.owed_run_ids(new)})
    if len(owed) > MAX_MERGED_IDS:
        return None
    merged["owed_run_ids"] = owed
    merged["committed_at"] = max(
        str(waiting.get("committed_at", "")), str(new.get("committed_at", ""))
    )
    return merged
