"""The last controls this SDK heard, on disk: a restarted agent obeys the kill it saw before.

One file per hub and API key, beside the spool's folder of the same name
(``<spool_dir>/<spool key>.controls.json``, whatever ``spool`` says): the ``ControlSet`` as the
hub sent it, written atomically (a temporary file, then a rename) whenever a new set arrives;
removed when a set arrives that pauses and kills nothing, so that an org without controls costs
no disk write.
Its modification time is renewed each time the hub confirms the set (a heartbeat, a poll
answered 304), so what a new process loads is as old as it was when the last one stopped
hearing the hub. ``init()`` loads it before any call; pydantic is imported only if it exists.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agentops_sdk.spool import spool_key

if TYPE_CHECKING:
    from agentops_sdk.contract.controls import ControlSet

__all__ = ["SavedControls"]

logger = logging.getLogger("agentops_sdk")


class SavedControls:
    """The file holding the last ``ControlSet`` received from one hub with one API key."""

    def __init__(self, spool_dir: Path, hub_url: str, api_key: str | None) -> None:
        self.path = spool_dir / f"{spool_key(hub_url, api_key)}.controls.json"
        self._warned = False

    def load(self) -> tuple[ControlSet, float] | None:
        """The saved set and how many seconds ago the hub last confirmed it; None if there is
        none, or it cannot be read (logged)."""
        try:
            payload = self.path.read_bytes()
            confirmed = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("agentops: cannot read the saved controls %s: %s", self.path, exc)
            return None
        from agentops_sdk.contract.controls import ControlSet

        try:
            controls = ControlSet.model_validate_json(payload)
        except ValueError as exc:
            logger.warning("agentops: ignoring unreadable saved controls %s: %s", self.path, exc)
            return None
        return controls, max(0.0, time.time() - confirmed)

    def save(self, controls: ControlSet) -> None:
        """Replace the saved set with ``controls``, atomically; a set that pauses and kills
        nothing is saved as no file at all (most agents never write one)."""
        if all(control.state == "active" for control in controls.controls):
            self._remove()
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(controls.model_dump_json())
            temporary.replace(self.path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            self._failed(exc)
            return
        self._warned = False

    def _remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            self._failed(exc)

    def touch(self) -> None:
        """The hub confirmed the saved set: renew its modification time."""
        try:
            os.utime(self.path)
        except FileNotFoundError:
            pass  # nothing saved yet (this process had its set from elsewhere): nothing to renew
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if not self._warned:  # once until a save works again: the disk will not heal each call
            self._warned = True
            logger.warning(
                "agentops: cannot save the hub's controls to %s (%s); a restart would not "
                "know them until it hears the hub",
                self.path,
                exc,
            )
