"""An agent process for the policy tests: tool and model calls on command, each answered as a
JSON line.

    E2E_MARKERS=ran.txt python -m tests.e2e.agent_policies

The SDK is configured from ``AGENTOPS_*`` variables (the OpenAI integration is on, as
``init()`` enables what is installed). Each tool's body appends its name to the file named by
``E2E_MARKERS``, so that the test sees from outside which bodies ran. The process prints
``{"ready": ...}`` once ``init()`` returned, then reads one JSON command per line on stdin and
answers each with one JSON line:

- ``{"policy": 3, "within": 10}``: wait until the SDK holds the hub's policy set of version 3
  (the hub numbers the versions it saves); answers ``{"policy": the version held, or None}``.
- ``{"call": "delete_user"}``: call that tool, in a run of its own (of the agent ``support``,
  or ``"agent"``); answers ``{"outcome": "ok" or the error's class name, "message", "rule",
  "run_id"}``.
- ``{"calls": 3, "call": "lookup"}``: that, 3 times; answers ``{"outcomes": [...]}``.
- ``{"until": "PolicyViolation", "call": "lookup", "within": 5}``: call as fast as the loop
  goes until a call ends with that outcome (``"ok"`` waits for a call that works again) or
  ``within`` seconds pass; answers the last call's answer with ``"at"``, time.time() of that
  call, and ``"calls"``, how many were made.
- ``{"chat": "gpt-4"}``: one ``chat.completions.create`` of the real ``openai`` client asking
  for that model, over a mocked transport, in a run of its own; answers as ``call`` does, with
  ``"requests"``, how many requests the transport has had in this process so far.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agentops_sdk as agentops
from agentops_sdk.client import get_client
from agentops_sdk.enforcement.policy import TOPIC
from tests.integrations.test_openai import MESSAGES, FakeOpenAI

MARKERS = Path(os.environ["E2E_MARKERS"])
CHAT: Any = MESSAGES


def _ran(name: str) -> None:
    with MARKERS.open("a") as markers:
        markers.write(name + "\n")


@agentops.tool
def delete_user(user_id: str) -> None:
    """A tool the policies deny."""
    _ran("delete_user")


@agentops.tool
def lookup(ticket: int) -> int:
    """A tool the policies allow, warn about, or deny as the test changes them."""
    _ran("lookup")
    return ticket


TOOLS: dict[str, Callable[[], object]] = {
    "delete_user": lambda: delete_user("u1"),
    "lookup": lambda: lookup(7),
}


class Agent:
    """The commands, and the mocked OpenAI API the chat calls go to."""

    def __init__(self) -> None:
        self.openai = FakeOpenAI()
        self.client = self.openai.client()

    def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        if "policy" in command:
            return {"policy": self.wait_for_policy(command["policy"], command.get("within", 10))}
        if "until" in command:
            return self.until(command)
        if "calls" in command:
            return {"outcomes": [self.call(command)["outcome"] for _ in range(command["calls"])]}
        if "call" in command or "chat" in command:
            return self.call(command)
        return {"unknown": command}

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {"outcome": "ok", "message": None, "rule": None}
        with agentops.run(command.get("agent", "support")) as run:
            answer["run_id"] = run.run_id
            try:
                if "chat" in command:
                    self.client.chat.completions.create(
                        model=command["chat"], messages=CHAT, max_tokens=50
                    )
                else:
                    TOOLS[command["call"]]()
            except agentops.EnforcementError as exc:
                answer |= {
                    "outcome": type(exc).__name__,
                    "message": str(exc),
                    "rule": getattr(exc, "rule", None),
                }
        answer["requests"] = len(self.openai.requests)
        return answer

    def until(self, command: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + command.get("within", 10.0)
        calls = 0
        while True:
            at = time.time()
            answer = self.call(command)
            calls += 1
            if answer["outcome"] == command["until"] or time.monotonic() >= deadline:
                return answer | {"at": at, "calls": calls}

    def wait_for_policy(self, version: int, within: float) -> int | None:
        client = get_client()
        assert client is not None
        link = client.enforcer.link

        def held() -> int | None:
            policy = link.snapshot.values.get(TOPIC)
            return None if policy is None else policy.version

        link.wait_until(lambda: held() == version, within)
        return held()


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
