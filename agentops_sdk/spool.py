"""A disk spool for batches the hub could not take now: an outage or a restart loses nothing.

Each batch is one file, ``<batch id>.<events>.json`` (ids are time-ordered, so names sort oldest
first), written atomically (temporary file, then rename) in a folder named after the hub URL and
API key, so the next process started with the same settings finds and delivers it. A process
*claims* a file by renaming it with its pid before sending it, so two processes never send the
same file; claims left by a dead process are released on start-up. The hub stores each event id
once, so a batch both delivered and spooled (a send that succeeded as the process died) is
harmless.

The spool keeps an index of its files in memory (names, events, bytes), so writing, claiming and
reporting its size cost no directory scan; the index is rebuilt from the folder when it is
empty and the folder changed since (one ``stat``), or when the spool seems full: that is how
batches spooled by another process with the same settings are found.
It is used from several threads at once (the worker, the sender, an agent thread spilling an
overflowing queue): the index is guarded by a lock, file I/O happens outside it.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from agentops_sdk.exporters import ExportBatch

__all__ = ["Claim", "Spool", "spool_key"]

logger = logging.getLogger("agentops_sdk")

_SUFFIX = ".json"
_CLAIM = ".claimed-"
_RESCAN_INTERVAL = 5.0
_FULL_LOG_INTERVAL = 60.0
"""A full spool says so at most this often (the worker counts each drop as spool_full)."""


def spool_key(hub_url: str, api_key: str | None) -> str:
    """The folder name for one hub and key: batches are only replayed where they belong."""
    digest = hashlib.sha256(f"{hub_url.rstrip('/')}\n{api_key or ''}".encode())
    return digest.hexdigest()[:24]


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """Spooled batches taken by this process to send as one: ``done`` or ``release`` them."""

    batch: ExportBatch
    paths: tuple[Path, ...]


@dataclasses.dataclass(slots=True)
class _Entry:
    events: int
    size: int


class Spool:
    """Batches on disk under ``root/key``, at most ``max_bytes`` in all."""

    def __init__(self, root: Path, key: str, max_bytes: int) -> None:
        self.folder = root / key
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._names: list[str] = []
        """Unclaimed files, oldest first."""
        self._entries: dict[str, _Entry] = {}
        """Unclaimed files by name."""
        self._events = 0
        self._bytes = 0
        """Events and bytes in the unclaimed files."""
        self._claimed_bytes = 0
        """Bytes of files claimed by this process, or being written by it."""
        self._scanned_version: int | None = None
        """The folder's modification time at the last scan."""
        self._scanned_at = 0.0
        self._full_logged_at: float | None = None
        self._scan()

    # -- writing ------------------------------------------------------------------------------

    def write(self, batch: ExportBatch) -> bool:
        """Store ``batch``; False when the spool is full or the disk refuses (logged)."""
        payload = batch.payload
        if not self._reserve(len(payload)):
            return False
        name = f"{batch.batch_id}.{len(batch)}{_SUFFIX}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = self.folder / f".{batch.batch_id}.{os.getpid()}.tmp"
            temporary.write_bytes(payload)
            temporary.replace(self.folder / name)
        except OSError as exc:
            with self._lock:
                self._claimed_bytes -= len(payload)
            logger.warning("agentops: cannot spool a batch to %s: %s", self.folder, exc)
            return False
        with self._lock:
            self._claimed_bytes -= len(payload)
            self._add(name, _Entry(len(batch), len(payload)))
        return True

    # -- reading ------------------------------------------------------------------------------

    def pending(self) -> int:
        """How many unclaimed batches wait in the spool."""
        self._rescan_if_idle()
        return len(self._names)

    def pending_events(self) -> tuple[int, int]:
        """Events and bytes in the spool's unclaimed batches."""
        with self._lock:
            return self._events, self._bytes

    def claim(self, max_events: int, max_bytes: int) -> Claim | None:
        """Take the oldest unclaimed batches, up to ``max_events`` and about ``max_bytes`` (at
        least one), as one batch for this process; None if there is none."""
        self._rescan_if_idle()
        batches: list[ExportBatch] = []
        paths: list[Path] = []
        events = size = 0
        while True:
            with self._lock:
                if not self._names:
                    break
                name = self._names[0]
                entry = self._entries[name]
                full = events + entry.events > max_events or size + entry.size > max_bytes
                if batches and full:
                    break
                self._remove(name)
                self._claimed_bytes += entry.size
            taken = self._take(name, entry)
            if taken is None:
                continue
            paths.append(taken[0])
            batches.append(taken[1])
            events += len(taken[1])
            size += entry.size
        if not batches:
            return None
        from agentops_sdk.ids import format_id, new_id

        return Claim(ExportBatch.merge(format_id(new_id()), batches), tuple(paths))

    def done(self, claim: Claim) -> None:
        """The claimed batches were delivered: remove them."""
        for path in claim.paths:
            size = _size(path)
            path.unlink(missing_ok=True)
            with self._lock:
                self._claimed_bytes -= size

    def release(self, claim: Claim) -> None:
        """The claimed batches could not be delivered: put them back, oldest first again."""
        for path in claim.paths:
            name = path.name.split(_CLAIM, 1)[0]
            size = _size(path)
            try:
                path.replace(path.with_name(name))
            except OSError as exc:
                logger.warning("agentops: cannot release spool file %s: %s", path, exc)
                continue
            with self._lock:
                self._claimed_bytes -= size
                self._add(name, _Entry(_events_in_name(name) or 0, size))

    def release_stale_claims(self) -> None:
        """Release claims whose process is gone (it died between claim and delivery)."""
        if not self.folder.is_dir():
            return
        released = False
        for claimed in self.folder.glob(f"*{_SUFFIX}{_CLAIM}*"):
            pid = claimed.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                name = claimed.name.split(_CLAIM, 1)[0]
                try:
                    claimed.replace(claimed.with_name(name))
                except OSError as exc:
                    logger.warning("agentops: cannot release spool file %s: %s", claimed, exc)
                    continue
                released = True
        if released:
            self._scan()

    # -- the index ----------------------------------------------------------------------------

    def _reserve(self, size: int) -> bool:
        """Count ``size`` bytes as used if they fit (rescanning once when they seem not to)."""
        for attempt in range(2):
            with self._lock:
                if self._claimed_bytes + self._bytes + size <= self._max_bytes:
                    self._claimed_bytes += size
                    return True
            if attempt == 0:
                self._scan()  # another process may have delivered some of it meanwhile
        now = time.monotonic()
        if self._full_logged_at is None or now - self._full_logged_at >= _FULL_LOG_INTERVAL:
            self._full_logged_at = now
            logger.warning(
                "agentops: the spool at %s is full (%d bytes, spool_max_bytes); events that "
                "cannot be sent now are dropped and counted as spool_full",
                self.folder,
                self._max_bytes,
            )
        return False

    def _take(self, name: str, entry: _Entry) -> tuple[Path, ExportBatch] | None:
        path = self.folder / name
        claimed = path.with_name(f"{name}{_CLAIM}{os.getpid()}")
        try:
            path.replace(claimed)
        except FileNotFoundError:  # another process claimed it first
            with self._lock:
                self._claimed_bytes -= entry.size
            return None
        except OSError as exc:
            logger.warning("agentops: cannot claim spool file %s: %s", path, exc)
            with self._lock:
                self._claimed_bytes -= entry.size
            return None
        try:
            batch = ExportBatch.from_payload(claimed.read_bytes(), _events_in_name(name))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("agentops: discarding unreadable spool file %s: %s", path, exc)
            claimed.unlink(missing_ok=True)
            with self._lock:
                self._claimed_bytes -= entry.size
            return None
        return claimed, batch

    def _add(self, name: str, entry: _Entry) -> None:
        """Index an unclaimed file (under the lock); names arrive mostly in order."""
        if name in self._entries:
            return
        self._entries[name] = entry
        self._events += entry.events
        self._bytes += entry.size
        if not self._names or name > self._names[-1]:
            self._names.append(name)
        else:
            bisect.insort(self._names, name)

    def _remove(self, name: str) -> None:
        """Drop the oldest file, ``name``, from the index (under the lock)."""
        entry = self._entries.pop(name)
        self._events -= entry.events
        self._bytes -= entry.size
        del self._names[0]

    def _rescan_if_idle(self) -> None:
        # The time is a fallback for a change within the file system's timestamp granularity.
        if not self._names and (
            _version(self.folder) != self._scanned_version
            or time.monotonic() - self._scanned_at > _RESCAN_INTERVAL
        ):
            self._scan()

    def _scan(self) -> None:
        """Rebuild the index of unclaimed files from the folder."""
        found: dict[str, _Entry] = {}
        version = _version(self.folder)
        if version is not None:
            try:
                paths = list(self.folder.glob(f"*{_SUFFIX}"))
            except OSError:
                paths = []
            for path in paths:
                size = _size(path)
                if size:
                    found[path.name] = _Entry(_events_in_name(path.name) or 0, size)
        with self._lock:
            self._scanned_version = version
            self._scanned_at = time.monotonic()
            self._entries = found
            self._names = sorted(found)
            self._events = sum(entry.events for entry in found.values())
            self._bytes = sum(entry.size for entry in found.values())


def _events_in_name(name: str) -> int | None:
    """The event count written into a file's name; None for a file named without one."""
    parts = name.split(".")
    if len(parts) == 3 and parts[1].isdigit():
        return int(parts[1])
    return None


def _version(folder: Path) -> int | None:
    """The folder's modification time (it changes when a file is added or renamed)."""
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
