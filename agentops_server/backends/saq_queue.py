"""Derived work on Redis: :class:`SaqQueue`, a SAQ queue run by ``agentops-hub worker``.

The hub and every worker build one from the settings and register the same tasks (from
:mod:`agentops_server.services.tasks`): the hub writes and enqueues, the workers run. Each task
owed for a notice is one outbox row (:mod:`agentops_server.backends.outbox`) and one SAQ job
keyed by the row's id, so handing a row over twice while its job waits or runs is a no-op.

- A job is tried ``attempts`` times, with exponential backoff (and jitter) from ``backoff``
  seconds; after its last attempt its row becomes a dead letter (``agentops-hub jobs failed``).
- A queue that cannot be reached when a change commits loses nothing: the row waits, and the
  workers' sweep hands it over once the queue is back (``sweep_interval``, rows older than
  ``grace`` seconds).
- SIGTERM or SIGINT stops a worker: running jobs get ``shutdown_grace`` seconds to finish, the
  others go back to the queue.
- A :class:`~agentops_server.backends.derived_work.Schedule` is a SAQ cron job in every worker,
  keyed by its notice: each worker offers the job of the next due time, the queue keeps one of
  that key, so however many workers run, each due time is handed over (and its tasks run) once.
  A schedule ``at_start`` is also handed over when each worker starts (once per worker).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from saq import CronJob, Job, Status, Worker
from saq.queue.redis import RedisQueue
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.derived_work import (
    DerivedWork,
    Notice,
    Schedule,
    Task,
    scheduled_payload,
)
from agentops_server.backends.outbox import Outbox, WorkItem, new_items, task_key, write

__all__ = ["JOB_FUNCTION", "SCHEDULE_FUNCTION", "SaqQueue"]

logger = logging.getLogger("agentops_server.derived_work")

JOB_FUNCTION = "agentops.derived_task"
"""The one SAQ function every job names; its arguments say which task to run on what."""
SCHEDULE_FUNCTION = "agentops.scheduled"
"""The SAQ cron function of a schedule is named this, a colon, and the schedule's notice."""


class SaqQueue(DerivedWork):
    """:class:`DerivedWork` on the SAQ queue ``name`` at ``redis_url``, recorded in ``outbox``."""

    def __init__(
        self,
        redis_url: str,
        outbox: Outbox,
        *,
        name: str = "agentops",
        attempts: int = 5,
        backoff: float = 1.0,
        timeout: int = 300,
    ) -> None:
        # A queue that does not answer must not hold a request: connect within a second.
        redis: Redis = Redis.from_url(redis_url, socket_connect_timeout=1)
        self.queue = RedisQueue(redis, name=name)
        self.outbox = outbox
        self._tasks: dict[str, dict[str, Task]] = collections.defaultdict(dict)
        self._schedules: list[Schedule] = []
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout

    def register(self, task_name: str, task: Task) -> None:
        """Run ``task`` for every notice named ``task_name``."""
        self._tasks[task_name][task_key(task)] = task

    def schedule(self, schedule: Schedule) -> None:
        """Hand the notice over at the schedule's times from the workers (:meth:`work`), once
        per due time however many run; the hub itself schedules nothing."""
        self._schedules.append(schedule)

    async def record(
        self,
        session: AsyncSession,
        task_name: str,
        payload: Mapping[str, Any],
        *,
        not_before: dt.datetime | None = None,
    ) -> Notice:
        """Write one outbox row per task registered for ``task_name`` in ``session``; their
        jobs are scheduled for ``not_before`` (None: at once)."""
        work = new_items(task_name, self._tasks.get(task_name, {}), payload, not_before)
        await write(session, work)
        return Notice(task_name, payload, tuple(work), not_before)

    async def dispatch(self, notice: Notice) -> None:
        """Enqueue the jobs of the rows :meth:`record` wrote."""
        await self.hand_over(notice.work)

    async def enqueue(self, task_name: str, payload: Mapping[str, Any]) -> None:
        """Record the notice's rows in a transaction of their own, then enqueue their jobs."""
        work = new_items(task_name, self._tasks.get(task_name, {}), payload)
        try:
            await self.outbox.add(work)
        except Exception:
            logger.exception("derived work: %s not recorded; enqueued without a record", task_name)
        await self.hand_over(work)

    async def hand_over(self, work: Sequence[WorkItem]) -> int:
        """Enqueue a job for each item (once: a job of the same key still waiting or running
        stays the only one); how many the queue took. An unreachable queue is logged, never
        raised: the items wait in the outbox for the sweep."""
        for handed, item in enumerate(work):
            try:
                await self.queue.enqueue(self._job(item))
            except (RedisError, OSError) as exc:
                logger.warning(
                    "derived work: the queue is unreachable (%s); %d jobs wait in the outbox",
                    exc,
                    len(work) - handed,
                )
                return handed
        return len(work)

    async def sweep(self, grace: float) -> int:
        """Hand over again every item older than ``grace`` seconds that is neither done nor
        failed; how many the queue took."""
        return await self.hand_over(await self.outbox.due(grace))

    async def start(self) -> None:
        """Nothing to start in the hub: the workers run the jobs."""

    async def close(self) -> None:
        """Close the connections to Redis and the database (a Redis that is down has none)."""
        try:
            await self.queue.disconnect()
        except (RedisError, OSError) as exc:
            logger.warning("derived work: closing the queue: %s", exc)
        await self.outbox.close()

    async def work(
        self,
        *,
        concurrency: int = 10,
        sweep_interval: float = 60.0,
        grace: float = 60.0,
        shutdown_grace: int = 10,
    ) -> None:
        """Run jobs until SIGTERM or SIGINT; sweep at start and every ``sweep_interval``; hand
        the schedules' notices over at their times (and at start, those that ask)."""
        sweeping: list[asyncio.Task[None]] = []

        async def startup(_context: Any) -> None:
            sweeping.append(asyncio.create_task(self._sweep_every(sweep_interval, grace)))
            now = dt.datetime.now(dt.UTC)
            for schedule in self._schedules:
                if schedule.at_start:
                    await self.enqueue(schedule.task_name, scheduled_payload(now))

        async def shutdown(_context: Any) -> None:
            for task in sweeping:
                task.cancel()
            await asyncio.gather(*sweeping, return_exceptions=True)

        worker: Worker[Any] = Worker(
            self.queue,
            functions=[(JOB_FUNCTION, self._run)],
            concurrency=concurrency,
            startup=startup,
            shutdown=shutdown,
            after_process=self._after,
            shutdown_grace_period_s=shutdown_grace,
            cron_jobs=[
                CronJob(self._on_time(schedule), cron=schedule.cron, timeout=self._timeout)
                for schedule in self._schedules
            ],
            cron_tz=dt.UTC,
        )
        await worker.start()

    def _on_time(self, schedule: Schedule) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
        """The cron function of ``schedule``: it enqueues the notice of the time it was due.
        SAQ keys a cron job by its function's name (one job of a key waits at a time), so each
        schedule gets a function of its own name."""

        async def hand_over(context: Mapping[str, Any]) -> None:
            due = dt.datetime.fromtimestamp(context["job"].scheduled, dt.UTC)
            await self.enqueue(schedule.task_name, scheduled_payload(due))

        hand_over.__qualname__ = f"{SCHEDULE_FUNCTION}:{schedule.task_name}"
        return hand_over

    async def _sweep_every(self, interval: float, grace: float) -> None:
        while True:
            try:
                handed = await self.sweep(grace)
            except Exception:  # the database is down: the next sweep tries again
                logger.exception("derived work: the outbox sweep failed")
            else:
                if handed:
                    logger.info("derived work: %d jobs handed over again from the outbox", handed)
            await asyncio.sleep(interval)

    def _job(self, item: WorkItem) -> Job:
        return Job(
            function=JOB_FUNCTION,
            kwargs={
                "item_id": str(item.id),
                "notice": item.notice,
                "task": item.task,
                "payload": dict(item.payload),
            },
            key=str(item.id),
            retries=self._attempts,
            retry_delay=self._backoff,
            retry_backoff=True,
            timeout=self._timeout,
            # A delayed item runs when due (SAQ schedules by epoch seconds; 0 is at once).
            scheduled=0 if item.not_before is None else int(item.not_before.timestamp()),
        )

    async def _run(
        self,
        _context: Mapping[str, Any],
        *,
        item_id: str,
        notice: str,
        task: str,
        payload: Mapping[str, Any],
    ) -> None:
        run = self._tasks.get(notice, {}).get(task)
        if run is None:
            raise LookupError(f"no task {task} is registered for {notice} in this worker")
        await run(payload)
        await self.outbox.done(uuid.UUID(item_id))

    async def _after(self, context: Mapping[str, Any]) -> None:
        """After SAQ has settled a job: one that failed its last attempt becomes a dead letter
        only now, once no job of its key is left in the queue, so a retry is never a no-op."""
        job: Job = context["job"]
        if job.status == Status.FAILED and job.function == JOB_FUNCTION and job.kwargs:
            error = repr(context.get("exception") or job.error)
            await self.outbox.failed(uuid.UUID(job.kwargs["item_id"]), error)
