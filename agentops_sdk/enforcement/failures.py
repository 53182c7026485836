"""Logging a part that keeps failing, without flooding the log: once per interval per part."""

from __future__ import annotations

import logging
import sys
import threading
import time

__all__ = ["FailureLog"]

logger = logging.getLogger("agentops_sdk")


class FailureLog:
    """Logs the exception being handled, at most once per ``interval`` seconds per failing part
    and message.

    A stage that crashes crashes on every call; the first failure is logged with its traceback,
    later ones within the interval are only counted, and the next line says how many there were.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        # By identity (a user's guard need not be hashable), holding the part so that its id
        # is not reused by another while it is remembered.
        self._last: dict[tuple[int, str], tuple[float, object]] = {}
        self._unlogged: dict[tuple[int, str], int] = {}

    def failed(self, part: object, message: str, *args: object) -> None:
        """Log ``message % args`` as an error (with the exception being handled, if any),
        unless ``part`` failed with this ``message`` lately."""
        key = (id(part), message)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval:
                self._unlogged[key] = self._unlogged.get(key, 0) + 1
                return
            self._last[key] = (now, part)
            unlogged = self._unlogged.pop(key, 0)
        if unlogged:
            message += " (and %d more times since it was last logged)"
            args = (*args, unlogged)
        logger.error(message, *args, exc_info=sys.exc_info()[1] is not None)
