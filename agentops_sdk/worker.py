"""The background thread that turns queued records into batches and delivers them.

It wakes when a batch's worth of events is queued, when ``flush()`` asks, or every
``flush_interval``. Everything slow happens here, never on an agent's thread: the wire dicts,
the user's ``before_send``, JSON encoding, the exporter's network I/O, retries, spooling.

When the exporter reports a transient failure (the hub is unreachable), the batch is spooled to
disk and the exporter is considered down for a backoff period (doubling up to a minute): new
batches go straight to the spool instead of each waiting out its own retries. After the backoff
the oldest spooled batch is tried first; once it goes through, the spool is drained in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from agentops_sdk.buffer import EventBuffer, Queued
from agentops_sdk.config import Options
from agentops_sdk.exporters import ExportBatch, Exporter, ExportOutcome, encode
from agentops_sdk.ids import format_id, new_id
from agentops_sdk.spool import Spool
from agentops_sdk.stats import Counters

__all__ = ["Worker"]

logger = logging.getLogger("agentops_sdk")

_MAX_DOWN_BACKOFF = 60.0


class Worker:
    """Drains ``buffer`` into ``exporter``; owns every delivery decision."""

    def __init__(
        self,
        *,
        buffer: EventBuffer,
        exporter: Exporter | None,
        counters: Counters,
        options: Options,
        spool: Spool | None,
    ) -> None:
        self._buffer = buffer
        self._exporter = exporter
        self._counters = counters
        self._options = options
        self._spool = spool
        self._wake = buffer.batch_ready
        self._stopping = threading.Event()
        self.cancel = threading.Event()
        """Set to abandon retries and waits at once (the shutdown deadline has passed)."""
        self._progress = threading.Condition()
        self.processed = 0
        """Records taken from the buffer whose fate is decided (sent, spooled or dropped)."""
        self._inflight_lock = threading.Lock()
        self._inflight: tuple[ExportBatch, int] | None = None
        self._held: tuple[ExportBatch, int] | None = None
        """Without a spool: the batch the hub could not take, retried first when it is back."""
        self._down_until = 0.0
        self._down_backoff = 1.0
        self._next_spool_check = 0.0
        self._before_send_failed = False
        self._thread: threading.Thread | None = None

    # -- control, from other threads ---------------------------------------------------------

    def start(self) -> None:
        """Start the thread (a daemon: it never keeps the process alive)."""
        self._thread = threading.Thread(target=self._run, name="agentops-worker", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def wait_processed(self, target: int, deadline: float) -> bool:
        """Wake the worker and wait until ``target`` records are processed or ``deadline``."""
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(
                lambda: self.processed >= target, timeout=max(0.0, deadline - time.monotonic())
            )

    def stop(self, deadline: float) -> bool:
        """Drain what is queued, then stop; True if the thread ended by ``deadline``."""
        self._stopping.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def abandon(self) -> int:
        """After the deadline: stop retrying and spool (or drop) what is still in memory.

        Runs on the caller's thread while the worker may still be blocked in a request; the
        in-flight batch is taken over, so the worker will not count it again.
        """
        self.cancel.set()
        with self._inflight_lock:
            inflight, self._inflight = self._inflight, None
            held, self._held = self._held, None
        settled = 0
        for taken in (inflight, held):
            if taken is not None:
                taken_batch, records = taken
                self._spool_or_drop(taken_batch)
                settled += records
        while True:
            items = self._buffer.take(self._options.batch_max_events, self._options.batch_max_bytes)
            if not items:
                break
            batch = self._encode(items)
            if batch is not None:
                self._spool_or_drop(batch)
            settled += len(items)
        self._mark_processed(settled)
        return settled

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._spool is not None:
                self._spool.release_stale_claims()
            while True:
                self._wake.wait(self._options.flush_interval)
                self._wake.clear()
                stopping = self._stopping.is_set()
                self._drain(stopping=stopping)
                self._deliver_spooled(everything=stopping)
                if stopping or self.cancel.is_set():
                    return
        except Exception:
            logger.exception("agentops: the delivery worker failed; events are no longer sent")

    def _drain(self, *, stopping: bool = False) -> None:
        options = self._options
        if self._spool is None and not stopping and time.monotonic() < self._down_until:
            return  # hub down and nowhere to spool: keep events queued (bounded) until it is back
        if self._held is not None:
            held_batch, records = self._held
            self._held = None
            self._deliver(held_batch, records)
        while self._held is None and not self.cancel.is_set():
            items = self._buffer.take(options.batch_max_events, options.batch_max_bytes)
            if not items:
                return
            if self._exporter is None:  # exporter="none": settle at once, hold nothing
                self._counters.drop("no_exporter", len(items))
                self._mark_processed(len(items))
                continue
            batch = self._encode(items)
            if batch is None:
                self._mark_processed(len(items))
            else:
                self._deliver(batch, len(items))

    def _deliver(self, batch: ExportBatch, records: int) -> None:
        if self._spool is not None and self._is_down():
            self._spool_or_drop(batch)
            self._mark_processed(records)
            return
        with self._inflight_lock:
            self._inflight = (batch, records)
        outcome = self._export(batch)
        with self._inflight_lock:
            if self._inflight is None:  # abandon() took it over meanwhile
                return
            self._inflight = None
            if outcome.status == "retry" and self._spool is None and not self.cancel.is_set():
                self._held = (batch, records)
                return
        if outcome.status == "sent":
            self._count_sent("sent", batch, outcome)
        elif outcome.status == "retry":
            self._spool_or_drop(batch)
        else:
            self._counters.drop("export_failed", len(batch))
        self._mark_processed(records)

    def _deliver_spooled(self, *, everything: bool) -> None:
        """Send spooled batches while the exporter takes them; one per wake-up unless told."""
        spool = self._spool
        now = time.monotonic()
        if spool is None or self.cancel.is_set() or now < self._down_until:
            return
        if now < self._next_spool_check and not everything:
            return
        self._next_spool_check = now + self._options.flush_interval * 5
        while not self.cancel.is_set():
            claim = spool.claim_oldest()
            if claim is None:
                return
            path, batch = claim
            # A probe: if the hub is still down, give up soon and leave the batch spooled
            # rather than hold fresh events back for the whole retry budget.
            outcome = self._export(
                batch, min(self._options.retry_budget, self._options.export_timeout)
            )
            if outcome.status == "sent":
                spool.done(path)
                self._count_sent("spool_delivered", batch, outcome)
            elif outcome.status == "retry":
                spool.release(path)
                return
            else:
                spool.done(path)
                self._counters.drop("export_failed", len(batch))
            if not everything and len(self._buffer) >= self._options.batch_max_events:
                return  # fresh events first; the rest of the spool on a later wake-up

    def _export(self, batch: ExportBatch, budget: float | None = None) -> ExportOutcome:
        exporter = self._exporter
        if exporter is None:
            return ExportOutcome("failed", detail="no exporter")
        deadline = time.monotonic() + (self._options.retry_budget if budget is None else budget)
        try:
            outcome = exporter.export(batch, deadline=deadline, cancel=self.cancel)
        except Exception as exc:
            logger.exception("agentops: exporter %r raised", exporter)
            outcome = ExportOutcome("failed", detail=repr(exc))
        self._counters.add("retried", outcome.retries)
        if outcome.auth_failed:
            self._counters.add("auth_failures")
        if outcome.status == "retry":
            self._down_until = time.monotonic() + self._down_backoff
            self._down_backoff = min(self._down_backoff * 2, _MAX_DOWN_BACKOFF)
            if not self.cancel.is_set():  # past shutdown's deadline there is no next try
                logger.warning(
                    "agentops: cannot reach the hub (%s); %s, next try in %.0fs",
                    outcome.detail,
                    "spooling events" if self._spool is not None else "keeping events queued",
                    self._down_until - time.monotonic(),
                )
        elif outcome.status == "sent":
            self._down_backoff = 1.0
        return outcome

    def _count_sent(
        self,
        counter: Literal["sent", "spool_delivered"],
        batch: ExportBatch,
        outcome: ExportOutcome,
    ) -> None:
        """Count a delivered batch; the events the receiver refused are dropped as rejected."""
        rejected = min(outcome.rejected, len(batch))
        self._counters.add(counter, len(batch) - rejected)
        if rejected:
            self._counters.drop("rejected", rejected)

    def _is_down(self) -> bool:
        return time.monotonic() < self._down_until or (
            self._spool is not None and self._down_backoff > 1.0 and self._spool.pending() > 0
        )

    def _spool_or_drop(self, batch: ExportBatch) -> None:
        if self._spool is not None and self._spool.write(batch):
            self._counters.add("spooled", len(batch))
        else:
            self._counters.drop("export_failed", len(batch))

    def _mark_processed(self, records: int) -> None:
        with self._progress:
            self.processed += records
            self._progress.notify_all()

    def _encode(self, items: Sequence[Queued]) -> ExportBatch | None:
        """Wire dicts, ``before_send`` and JSON for ``items``; drops are counted here."""
        before_send = self._options.before_send
        max_bytes = self._options.batch_max_bytes
        events: list[dict[str, Any]] = []
        lines: list[bytes] = []
        for item in items:
            event: dict[str, Any] | None = item.to_wire()  # type: ignore[attr-defined]
            if before_send is not None:
                event = self._apply_before_send(before_send, event)
                if event is None:
                    continue
            try:
                line = encode(event)
            except (TypeError, ValueError):
                self._counters.drop("serialization_error")
                continue
            if len(line) > max_bytes:
                self._counters.drop("oversize")
                continue
            events.append(event)  # type: ignore[arg-type]
            lines.append(line)
        if not events:
            return None
        return ExportBatch(format_id(new_id()), events, lines)

    def _apply_before_send(self, hook: Any, event: Any) -> dict[str, Any] | None:
        try:
            result = hook(event)
        except Exception:
            if not self._before_send_failed:
                self._before_send_failed = True
                logger.exception("agentops: before_send raised; such events are dropped")
            result = None
        if not isinstance(result, dict):
            self._counters.drop("before_send")
            return None
        return result
