"""Derived work: what follows a committed change, done off the request path.

After ingest commits, and after any later domain change, the hub hands a notice (a task name and
a JSON-able payload) to :class:`DerivedWork`; the tasks registered for that name (pricing,
rollups, budget checks, alerts, live updates) run later, elsewhere, with retries. The request
never waits for them and never fails because of them: an acknowledged event is committed
whatever becomes of the work derived from it.

The interface is two calls, so a queue on Redis (SAQ, run by ``agentops-hub worker`` processes)
can take the place of the embedded runner without a caller changing::

    derived.register("telemetry.events_committed", price_spans)
    await derived.enqueue("telemetry.events_committed", {"org_id": ..., "run_ids": [...]})

A change that must never lose its derived work records the notice in its own transaction and
hands it over once committed (the queue on Redis keeps that record in an outbox table, see
:mod:`agentops_server.backends.outbox`; the embedded runner keeps none)::

    notice = await derived.record(session, "telemetry.events_committed", payload)
    await session.commit()
    await derived.dispatch(notice)

A recorded notice may be due later (``record(..., not_before=when)``: an approval's escalation):
the queue on Redis schedules its job for then (and its outbox row says when, so the sweep
hands it over again with the same time); the embedded runner holds it in a timer.

Some notices are owed to the clock, not to a change (the span partitions' upkeep, retention):
:meth:`DerivedWork.schedule` hands a notice over on a cron schedule (UTC), and once at start if
asked. The queue on Redis makes each one a SAQ cron job, so that however many workers run, each
scheduled time is handed over once; the embedded runner keeps a timer task per schedule between
the app's start and shutdown::

    derived.schedule(Schedule("telemetry.partitions", "0 */6 * * *", at_start=True))

:class:`InProcessRunner` is the embedded default: a bounded queue in the hub process, drained by
a few worker tasks between the app's start and shutdown. A notice whose name has a merge
(:meth:`DerivedWork.coalesce`: ingest's events-committed, whose tasks work on sets of ids) joins
a job of the same task and key still waiting in the queue instead of queueing another: under
load, one run of a task covers many commits (one transaction instead of one per batch). A
notice that finds the queue full is dropped and counted (``dropped``), never waited for; a task
that fails is retried with exponential backoff, and after its last attempt is logged and kept
among the last failures (``failures``). What the runner holds, its failures included, is lost
when the process stops: only the queue on Redis (:mod:`agentops_server.backends.saq_queue`)
records what must still be derived, so that a restarted worker catches up.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from croniter import croniter  # type: ignore[import-untyped]  # SAQ's own; it ships no types
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.outbox import WorkItem

__all__ = [
    "DerivedWork",
    "Failure",
    "InProcessRunner",
    "Merge",
    "Notice",
    "Schedule",
    "Task",
    "next_time",
    "scheduled_payload",
]

logger = logging.getLogger("agentops_server.derived_work")

Task = Callable[[Mapping[str, Any]], Awaitable[None]]
"""A task function: it gets the payload of the notice it was registered for."""
Merge = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any] | None]
"""Two payloads of one notice as one, or None (see :meth:`DerivedWork.coalesce`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    """A notice recorded in the transaction of a change, to :meth:`~DerivedWork.dispatch`
    once the change is committed; ``work`` is the durable record written for it (none for a
    backend that keeps no record)."""

    task_name: str
    payload: Mapping[str, Any]
    work: tuple[WorkItem, ...] = ()
    not_before: dt.datetime | None = None
    """When the notice is due (None: at once)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """The notice ``task_name`` handed over at each time of ``cron`` (UTC: five fields, or six
    with seconds last), and once when the backend starts if ``at_start``. Its payload is
    :func:`scheduled_payload` of the time it was due."""

    task_name: str
    cron: str
    at_start: bool = False

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.cron):
            raise ValueError(f"{self.task_name}: {self.cron!r} is not a cron expression")


def next_time(cron: str, after: dt.datetime) -> dt.datetime:
    """The first time of ``cron`` (UTC) after ``after``."""
    following: dt.datetime = croniter(cron, after.astimezone(dt.UTC)).get_next(dt.datetime)
    return following


def scheduled_payload(due: dt.datetime) -> dict[str, Any]:
    """The payload of a scheduled notice: when it was due (one notice per due time)."""
    return {"scheduled_at": due.astimezone(dt.UTC).isoformat()}


class DerivedWork(abc.ABC):
    """Where committed changes hand off the work derived from them."""

    @abc.abstractmethod
    def register(self, task_name: str, task: Task) -> None:
        """Run ``task`` for every notice named ``task_name`` (several tasks may share a name)."""

    @abc.abstractmethod
    async def enqueue(self, task_name: str, payload: Mapping[str, Any]) -> None:
        """Hand a notice over; it returns at once and never raises for the work itself."""

    def coalesce(self, task_name: str, merge: Merge) -> None:
        """Let notices named ``task_name`` be merged while they wait (a backend that does not
        merge ignores this): ``merge(waiting, new)`` is one payload doing the work of both, or
        None when they must stay apart (other orgs, or too large together). Only for notices
        whose every task works on the payload as a whole (sets of ids), idempotently."""
        logger.debug("derived work: %s does not merge %s notices", type(self).__name__, task_name)

    @abc.abstractmethod
    def schedule(self, schedule: Schedule) -> None:
        """Hand the notice of ``schedule`` over at its times, from :meth:`start` (the embedded
        runner) or from the workers (the queue on Redis) until :meth:`close`."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin running tasks (the app's start)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop, finishing what is queued within the backend's deadline (the app's shutdown)."""

    async def record(
        self,
        session: AsyncSession,
        task_name: str,
        payload: Mapping[str, Any],
        *,
        not_before: dt.datetime | None = None,
    ) -> Notice:
        """Record in ``session``'s transaction that the change owes the notice ``task_name``
        (due at ``not_before``, or at once); :meth:`dispatch` it after the commit. A backend
        with a durable record writes it here, so the change and its derived work commit
        together; the default records nothing."""
        return Notice(task_name, payload, not_before=not_before)

    async def dispatch(self, notice: Notice) -> None:
        """Hand over a notice :meth:`record` made, once its change is committed; like
        :meth:`enqueue`, it returns at once."""
        await self.enqueue(notice.task_name, notice.payload)


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """A task that failed its last attempt."""

    task_name: str
    payload: Mapping[str, Any]
    error: str


@dataclasses.dataclass(slots=True, eq=False)
class _Job:
    task_name: str
    task: Task
    payload: Mapping[str, Any]
    open: bool = False
    """Waiting in the queue with a merge: later notices may still join it."""


class InProcessRunner(DerivedWork):
    """:class:`DerivedWork` in the hub process: a bounded queue and ``workers`` tasks, and a
    timer task per :meth:`schedule` (each process keeps its own: two hub processes without
    Redis each hand a scheduled notice over, so its tasks must be idempotent).

    ``attempts`` tries per task, ``backoff`` seconds before the first retry (doubling after),
    at most ``max_pending`` notices waiting, ``drain_timeout`` seconds to finish at shutdown.
    """

    def __init__(
        self,
        *,
        max_pending: int = 10_000,
        workers: int = 2,
        attempts: int = 3,
        backoff: float = 0.5,
        drain_timeout: float = 10.0,
        keep_failures: int = 100,
    ) -> None:
        self._tasks: dict[str, list[Task]] = collections.defaultdict(list)
        self._merges: dict[str, Merge] = {}
        self._waiting: dict[tuple[str, int], list[_Job]] = {}
        """Open jobs by notice and task (its index among the notice's tasks)."""
        self._max_pending = max_pending
        self._queue: asyncio.Queue[_Job] | None = None  # made in start(), on the app's loop
        self._workers = workers
        self._attempts = attempts
        self._backoff = backoff
        self._drain_timeout = drain_timeout
        self._running: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.Task[None]] = set()
        self._schedules: list[Schedule] = []
        self._clocks: list[asyncio.Task[None]] = []
        """One task per schedule, from start() to close()."""
        self.dropped = 0
        """Jobs refused because the queue was full."""
        self.merged = 0
        """Notices that joined a waiting job instead of queueing their own."""
        self.failures: collections.deque[Failure] = collections.deque(maxlen=keep_failures)
        """The most recent tasks that failed their last attempt."""

    def register(self, task_name: str, task: Task) -> None:
        """Run ``task`` for every notice named ``task_name``."""
        self._tasks[task_name].append(task)

    def coalesce(self, task_name: str, merge: Merge) -> None:
        """Merge notices named ``task_name`` into a waiting job of the same task when
        ``merge`` says they can be."""
        self._merges[task_name] = merge

    async def enqueue(self, task_name: str, payload: Mapping[str, Any]) -> None:
        """Queue one job per task registered for ``task_name`` (none: nothing to do), or join
        a waiting one (:meth:`coalesce`); a job that finds the queue full, or the runner not
        started, is dropped and counted."""
        merge = self._merges.get(task_name)
        for index, task in enumerate(self._tasks.get(task_name, ())):
            if merge is not None and self._joined(task_name, index, merge, payload):
                self.merged += 1
                continue
            job = _Job(task_name, task, payload, open=merge is not None)
            try:
                if self._queue is None:
                    raise asyncio.QueueFull
                self._queue.put_nowait(job)
            except asyncio.QueueFull:
                self.dropped += 1
                logger.warning("derived work: the queue is full; %s dropped", task_name)
                continue
            if job.open:
                self._waiting.setdefault((task_name, index), []).append(job)

    def _joined(self, task_name: str, index: int, merge: Merge, payload: Mapping[str, Any]) -> bool:
        """Merge ``payload`` into a waiting job of the task, if one takes it."""
        for job in self._waiting.get((task_name, index), ()):
            merged = merge(job.payload, payload)
            if merged is not None:
                job.payload = merged
                return True
        return False

    async def dispatch(self, notice: Notice) -> None:
        """Queue the notice's jobs now, or, for a notice due later, when it is due (a timer
        in this process: it is lost if the process stops first, like every queued job)."""
        delay = _seconds_until(notice.not_before)
        if delay <= 0:
            await self.enqueue(notice.task_name, notice.payload)
            return
        timer = asyncio.create_task(self._later(delay, notice), name="agentops-derived-timer")
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _later(self, delay: float, notice: Notice) -> None:
        await asyncio.sleep(delay)
        await self.enqueue(notice.task_name, notice.payload)

    def schedule(self, schedule: Schedule) -> None:
        """Hand the notice over at the schedule's times while the runner runs."""
        self._schedules.append(schedule)

    async def start(self) -> None:
        """Start the worker tasks, and the timers of the schedules, on the running loop."""
        self._queue = asyncio.Queue(maxsize=self._max_pending)
        self._running = [
            asyncio.create_task(self._work(), name=f"agentops-derived-{n}")
            for n in range(self._workers)
        ]
        self._clocks = [
            asyncio.create_task(
                self._keep(schedule), name=f"agentops-schedule-{schedule.task_name}"
            )
            for schedule in self._schedules
        ]

    async def close(self) -> None:
        """Stop the schedules' timers, finish the queued jobs within ``drain_timeout``, then
        stop the workers."""
        for clock in self._clocks:
            clock.cancel()
        await asyncio.gather(*self._clocks, return_exceptions=True)
        self._clocks = []
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), self._drain_timeout)
            except TimeoutError:
                logger.warning("derived work: %d jobs left at shutdown", self._queue.qsize())
        for task in [*self._running, *self._timers]:
            task.cancel()
        await asyncio.gather(*self._running, *self._timers, return_exceptions=True)
        self._running, self._queue = [], None

    async def _keep(self, schedule: Schedule) -> None:
        """Hand the schedule's notice over at start (if asked) and at each of its times. A
        time that passed unseen (the loop held up, the machine asleep) is skipped, not caught
        up: the next due time is the first after now."""
        now = dt.datetime.now(dt.UTC)
        if schedule.at_start:
            await self.enqueue(schedule.task_name, scheduled_payload(now))
        due = next_time(schedule.cron, now)
        while True:
            await asyncio.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()))
            await self.enqueue(schedule.task_name, scheduled_payload(due))
            # never the same time twice, should the loop's timer wake a little early
            due = next_time(schedule.cron, max(due, dt.datetime.now(dt.UTC)))

    async def idle(self) -> None:
        """Wait until every queued job is done (or has failed its last attempt)."""
        if self._queue is not None:
            await self._queue.join()

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None, "start() made it"
        while True:
            job = await queue.get()
            if job.open:  # started: what arrives from now on needs a job of its own
                job.open = False
                for key, jobs in list(self._waiting.items()):
                    if job in jobs:
                        jobs.remove(job)
                        if not jobs:
                            del self._waiting[key]
                        break
            try:
                await self._run(job)
            finally:
                queue.task_done()

    async def _run(self, job: _Job) -> None:
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                await job.task(job.payload)
            except Exception as exc:
                if attempt == self._attempts:
                    logger.exception("derived work: %s failed for good", job.task_name)
                    self.failures.append(Failure(job.task_name, job.payload, repr(exc)))
                    return
                await asyncio.sleep(delay)
                delay *= 2
            else:
                return


def _seconds_until(moment: dt.datetime | None) -> float:
    if moment is None:
        return 0.0
    return (moment - dt.datetime.now(dt.UTC)).total_seconds()
