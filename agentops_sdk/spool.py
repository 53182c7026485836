"""A disk spool for batches the hub could not take: an outage or a restart loses nothing.

Each batch is one file, ``<batch id>.json`` (ids are time-ordered, so names sort oldest first),
written atomically (temporary file, then rename) in a folder named after the hub URL and API key,
so the next process started with the same settings finds and delivers it. A process *claims* a
file by renaming it with its pid before sending it, so two processes never send the same file;
claims left by a dead process are released on start-up. The hub stores each event id once, so a
batch both delivered and spooled (a send that succeeded as the process died) is harmless.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from agentops_sdk.exporters import ExportBatch

__all__ = ["Spool", "spool_key"]

logger = logging.getLogger("agentops_sdk")

_SUFFIX = ".json"
_CLAIM = ".claimed-"


def spool_key(hub_url: str, api_key: str | None) -> str:
    """The folder name for one hub and key: batches are only replayed where they belong."""
    digest = hashlib.sha256(f"{hub_url.rstrip('/')}\n{api_key or ''}".encode())
    return digest.hexdigest()[:24]


class Spool:
    """Batches on disk under ``root/key``, at most ``max_bytes`` in all."""

    def __init__(self, root: Path, key: str, max_bytes: int) -> None:
        self.folder = root / key
        self._max_bytes = max_bytes

    def write(self, batch: ExportBatch) -> bool:
        """Store ``batch``; False when the spool is full or the disk refuses."""
        payload = batch.payload
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self._used_bytes() + len(payload) > self._max_bytes:
                logger.warning("agentops: the spool at %s is full", self.folder)
                return False
            temporary = self.folder / f".{batch.batch_id}.{os.getpid()}.tmp"
            temporary.write_bytes(payload)
            temporary.replace(self.folder / f"{batch.batch_id}{_SUFFIX}")
        except OSError as exc:
            logger.warning("agentops: cannot spool a batch to %s: %s", self.folder, exc)
            return False
        return True

    def pending(self) -> int:
        """How many unclaimed batches wait in the spool."""
        return len(self._unclaimed())

    def claim_oldest(self) -> tuple[Path, ExportBatch] | None:
        """Take the oldest unclaimed batch for this process, or None if there is none."""
        for path in self._unclaimed():
            claimed = path.with_name(f"{path.name}{_CLAIM}{os.getpid()}")
            try:
                path.replace(claimed)
                batch = ExportBatch.from_payload(claimed.read_bytes())
            except FileNotFoundError:
                continue  # another process claimed it first
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("agentops: discarding unreadable spool file %s: %s", path, exc)
                claimed.unlink(missing_ok=True)
                continue
            return claimed, batch
        return None

    def done(self, claimed: Path) -> None:
        """The claimed batch was delivered: remove it."""
        claimed.unlink(missing_ok=True)

    def release(self, claimed: Path) -> None:
        """The claimed batch could not be delivered: put it back for later."""
        name = claimed.name.split(_CLAIM, 1)[0]
        try:
            claimed.replace(claimed.with_name(name))
        except OSError as exc:
            logger.warning("agentops: cannot release spool file %s: %s", claimed, exc)

    def release_stale_claims(self) -> None:
        """Release claims whose process is gone (it died between claim and delivery)."""
        if not self.folder.is_dir():
            return
        for claimed in self.folder.glob(f"*{_SUFFIX}{_CLAIM}*"):
            pid = claimed.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                self.release(claimed)

    def _unclaimed(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(self.folder.glob(f"*{_SUFFIX}"))

    def _used_bytes(self) -> int:
        total = 0
        for path in self.folder.iterdir():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total


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
