"""Agent processes for the end-to-end tests: a module of ``tests/e2e`` run with ``python -m``,
configured from ``AGENTOPS_*`` variables, answering one JSON command a line with one JSON line.

Each agent module prints ``{"ready": ...}`` once ``init()`` returned, and understands at least
``{"calls": n, ...}`` (answering the ``outcomes`` of n calls) and ``{"until": outcome,
"within": s, ...}`` (calling until a call ends with ``outcome``, answering that ``outcome``).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REACH = 30.0
"""How long a change may take to reach an agent by default (the target is about a second; the
margin is for a loaded test machine)."""
ANSWER = 120.0
"""How long an agent may take to answer a command by default (a command that waits, for an
approval say, is answered once the wait is over)."""


class AgentProcess:
    """A running agent module: one JSON command in, one JSON answer out; ``ready`` is the line
    it printed once ``init()`` returned."""

    def __init__(self, process: subprocess.Popen[str], ready: dict[str, Any]) -> None:
        self.process = process
        self.ready = ready
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name="agent-stdout", daemon=True).start()

    def ask(self, **command: Any) -> dict[str, Any]:
        """Send ``command``; its answer."""
        self.send(**command)
        return self.answer()

    def send(self, **command: Any) -> None:
        """Send ``command`` without waiting for its answer (read it with :meth:`answer`)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def answer(self, within: float = ANSWER) -> dict[str, Any]:
        """The answer to the oldest command not yet answered; fails if none comes ``within``
        seconds or the process exits."""
        try:
            line = self._lines.get(timeout=within)
        except queue.Empty:
            pytest.fail(f"the agent did not answer within {within} s")
        if line is None:
            assert self.process.stderr is not None
            pytest.fail(f"the agent exited:\n{self.process.stderr.read()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def until(self, outcome: str, within: float = REACH, **command: Any) -> dict[str, Any]:
        """Call until a call ends with ``outcome``; fails if none does ``within`` seconds."""
        answer = self.ask(until=outcome, within=within, **command)
        assert answer["outcome"] == outcome, answer
        return answer

    def outcomes(self, calls: int, **command: Any) -> set[str]:
        """The outcomes of ``calls`` calls."""
        return set(self.ask(calls=calls, **command)["outcomes"])

    def stop(self) -> None:
        """End the process (it shuts the SDK down, delivering what it recorded)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(30) == 0

    def kill(self) -> None:
        """SIGKILL the process (no shutdown, nothing flushed) and reap it."""
        self.process.kill()
        self.process.wait(30)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)


StartAgent = Callable[..., AgentProcess]
"""``start(hub_url, api_key, **options)``: an agent process with ``AGENTOPS_<OPTION>``
variables from ``options``."""


@contextmanager
def agent_starter(
    module: str, spool_dir: Path, variables: dict[str, str] | None = None
) -> Iterator[StartAgent]:
    """Starts processes of the agent ``module`` (with ``variables`` in their environment, and
    the SDK's spool in ``spool_dir``); kills those still running afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(hub_url: str, api_key: str, **options: Any) -> AgentProcess:
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("AGENTOPS_")
        }
        environment |= {
            "AGENTOPS_HUB_URL": hub_url,
            "AGENTOPS_API_KEY": api_key,
            "AGENTOPS_SPOOL_DIR": str(spool_dir),
            "AGENTOPS_ENVIRONMENT": "test",
            "AGENTOPS_CONTROLS_POLL_INTERVAL": "1",
            "AGENTOPS_MAX_BACKOFF": "1",
            **(variables or {}),
        }
        environment |= {f"AGENTOPS_{name.upper()}": str(value) for name, value in options.items()}
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        ready = process.stdout.readline()
        if not ready:
            assert process.stderr is not None
            pytest.fail(f"the agent exited before it was ready:\n{process.stderr.read()}")
        said: dict[str, Any] = json.loads(ready)
        assert "ready" in said
        return AgentProcess(process, said)

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
