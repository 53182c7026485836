"""The last controls and policies this SDK heard, on disk: a restarted agent obeys what it saw
before (the kill, the org's policy set) until it hears the hub again.

One file per hub, API key and topic, beside the spool's folder of the same name
(``<spool_dir>/<spool key>.controls.json``, ``<spool key>.policies.json``, whatever ``spool``
says): the ``ControlSet`` or ``EffectivePolicy`` as the hub sent it, written atomically (a
temporary file, then a rename) whenever a new one arrives; removed when one arrives that is not
worth keeping (controls that pause and kill nothing, no active policy set), so that an org
without either costs no disk write.
Its modification time is renewed each time the hub confirms it (a heartbeat, a poll answered
304), so what a new process loads is as old as it was when the last one stopped hearing the
hub. ``init()`` loads them before any call; pydantic is imported only if a file exists.
"""

from __future__ import annotations

import abc
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from agentops_sdk.spool import spool_key

if TYPE_CHECKING:
    from agentops_sdk.contract.controls import ControlSet
    from agentops_sdk.contract.policy import EffectivePolicy

__all__ = ["SavedControls", "SavedCopy", "SavedPolicies"]

logger = logging.getLogger("agentops_sdk")

T = TypeVar("T")


class SavedCopy(abc.ABC, Generic[T]):
    """The file holding the last value of one topic received from one hub with one API key."""

    topic: str
    """What the file holds, in its name and in log lines: ``controls``, ``policies``."""

    def __init__(self, spool_dir: Path, hub_url: str, api_key: str | None) -> None:
        self.path = spool_dir / f"{spool_key(hub_url, api_key)}.{self.topic}.json"
        self._warned = False

    @abc.abstractmethod
    def parse(self, payload: bytes) -> T:
        """The value in a saved file (raises ``ValueError`` if it is not one)."""

    @abc.abstractmethod
    def worth_keeping(self, value: T) -> bool:
        """Whether ``value`` says something a restarted agent must obey."""

    @abc.abstractmethod
    def dump(self, value: T) -> str:
        """``value`` as the file holds it."""

    def load(self) -> tuple[T, float] | None:
        """The saved value and how many seconds ago the hub last confirmed it; None if there is
        none, or it cannot be read (logged)."""
        try:
            payload = self.path.read_bytes()
            confirmed = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("agentops: cannot read the saved %s %s: %s", self.topic, self.path, exc)
            return None
        try:
            value = self.parse(payload)
        except ValueError as exc:
            logger.warning(
                "agentops: ignoring unreadable saved %s %s: %s", self.topic, self.path, exc
            )
            return None
        return value, max(0.0, time.time() - confirmed)

    def save(self, value: T) -> None:
        """Replace the saved value with ``value``, atomically; one not worth keeping is saved as
        no file at all (most agents never write one)."""
        if not self.worth_keeping(value):
            self._remove()
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(self.dump(value))
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
        """The hub confirmed the saved value: renew its modification time."""
        try:
            os.utime(self.path)
        except FileNotFoundError:
            pass  # nothing saved yet (this process had its value from elsewhere): nothing to renew
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if not self._warned:  # once until a save works again: the disk will not heal each call
            self._warned = True
            logger.warning(
                "agentops: cannot save the hub's %s to %s (%s); a restart would not know them "
                "until it hears the hub",
                self.topic,
                self.path,
                exc,
            )


class SavedControls(SavedCopy["ControlSet"]):
    """The last ``ControlSet``: kept while it pauses or kills something."""

    topic = "controls"

    def parse(self, payload: bytes) -> ControlSet:
        from agentops_sdk.contract.controls import ControlSet

        return ControlSet.model_validate_json(payload)

    def worth_keeping(self, value: ControlSet) -> bool:
        return any(control.state != "active" for control in value.controls)

    def dump(self, value: ControlSet) -> str:
        return value.model_dump_json()


class SavedPolicies(SavedCopy["EffectivePolicy"]):
    """The last ``EffectivePolicy``: kept while the org has an active set."""

    topic = "policies"

    def parse(self, payload: bytes) -> EffectivePolicy:
        from agentops_sdk.contract.policy import EffectivePolicy

        return EffectivePolicy.model_validate_json(payload)

    def worth_keeping(self, value: EffectivePolicy) -> bool:
        return value.policy is not None

    def dump(self, value: EffectivePolicy) -> str:
        return value.to_json()
