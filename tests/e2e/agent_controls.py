"""An agent process for the controls tests: tool calls on command, each answered as a JSON line.

    python -m tests.e2e.agent_controls

The SDK is configured from ``AGENTOPS_*`` variables. It prints ``{"ready": ...}`` once ``init()``
returned, then reads one JSON command per line on stdin and answers each with one JSON line:

- ``{"open": "support", "tags": ["billing"]}``: open a run of the agent ``support`` (the run's
  name is its agent) and keep it open; answers ``{"run_id": ...}``, or ``{"refused": ...}``.
- ``{"calls": 3}``: call the tool ``lookup`` 3 times, inside the open run, or each inside a run
  of its own (``"agent"`` and ``"tags"`` say which) when none is open; answers the outcome of
  each call (``"ok"`` or the error's class name) and ``ran``, how often the tool's body has run
  in this process so far.
- ``{"until": "AgentKilled", "within": 5}``: call as above, as fast as the loop goes, until a
  call ends with that outcome (``"ok"`` waits for a call that works again) or ``within``
  seconds pass; answers ``{"outcome": ..., "at": time.time() of that call, "calls": n,
  "ran": ...}``.
- ``{"close": true}``: close the open run.
- ``{"status": true}``: ``agentops.controls_status()`` as a dict.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import agentops_sdk as agentops

ran = 0
"""How often the tool's body has run."""


@agentops.tool
def lookup(ticket: int) -> int:
    """The tool under control: it counts each time its body runs."""
    global ran
    ran += 1
    return ticket


class Agent:
    """The commands' state: the run kept open, if any."""

    def __init__(self) -> None:
        self.open_run: agentops.run | None = None

    def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        if "open" in command:
            return self.open(command["open"], command.get("tags", ()))
        if "calls" in command:
            outcomes = [self.call(command) for _ in range(command["calls"])]
            return {"outcomes": outcomes, "ran": ran}
        if "until" in command:
            return self.until(command)
        if "close" in command:
            if self.open_run is not None:
                self.open_run.__exit__(None, None, None)
                self.open_run = None
            return {"closed": True}
        if "status" in command:
            return dataclasses.asdict(agentops.controls_status())
        return {"unknown": command}

    def open(self, agent: str, tags: list[str]) -> dict[str, Any]:
        run = agentops.run(agent, tags=tags)
        try:
            span = run.__enter__()
        except agentops.EnforcementError as exc:
            return {"refused": type(exc).__name__, "message": str(exc)}
        self.open_run = run
        return {"run_id": span.run_id}

    def call(self, command: dict[str, Any]) -> str:
        try:
            if self.open_run is not None:
                lookup(1)
            else:
                with agentops.run(command.get("agent", "support"), tags=command.get("tags", ())):
                    lookup(1)
        except agentops.EnforcementError as exc:
            return type(exc).__name__
        return "ok"

    def until(self, command: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + command.get("within", 10.0)
        calls = 0
        while True:
            at = time.time()
            outcome = self.call(command)
            calls += 1
            if outcome == command["until"] or time.monotonic() >= deadline:
                return {"outcome": outcome, "at": at, "calls": calls, "ran": ran}


def main() -> None:
    agentops.init()
    print(json.dumps({"ready": time.time()}), flush=True)
    agent = Agent()
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(agent.answer(json.loads(line))), flush=True)
    agentops.shutdown(5.0)


if __name__ == "__main__":
    main()
