"""An agent process for the approval tests and benchmark: ``send_email`` on command, each call
answered as a JSON line once it is over (a call waiting for a reviewer is answered after the
reviewer's decision).

    E2E_MARKERS=sent.jsonl python -m tests.e2e.agent_approvals

The SDK is configured from ``AGENTOPS_*`` variables. The tool's body appends one JSON line to
the file named by ``E2E_MARKERS`` as it starts (``{"to", "body", "at"}``, ``at`` being
``time.time()``), so that the test sees from outside that it ran, how often, with which
arguments, and when. The process prints ``{"ready": time.time(), "policy": the version of the
hub's policy set held}`` once ``init()`` returned, then reads one JSON command per line on stdin
and answers each with one JSON line:

- ``{"send": {"to": "bob@other.org", "body": "hi"}}``: call ``send_email`` with those
  arguments in a run of the agent ``mailer``; with ``"run_id": "<uuid>"``, inside
  ``agentops.resume_run`` of that id. Answers ``{"outcome": "ok" or the error's class name,
  "result": what the call returned, "message", "rule", "run_id", "started": time.time() when
  the body started, or None}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import agentops_sdk as agentops
from agentops_sdk.client import get_client
from agentops_sdk.enforcement.policy import TOPIC

MARKERS = Path(os.environ["E2E_MARKERS"])
AGENT = "mailer"

started: list[float] = []


@agentops.tool
def send_email(to: str, body: str = "hello") -> str:
    """A tool that needs a reviewer's approval for mail outside example.com."""
    at = time.time()
    started.append(at)
    with MARKERS.open("a") as markers:
        markers.write(json.dumps({"to": to, "body": body, "at": at}) + "\n")
    return f"sent to {to}"


def send(command: dict[str, Any]) -> dict[str, Any]:
    """One ``send`` command's call and its answer."""
    answer: dict[str, Any] = {"outcome": "ok", "result": None, "message": None, "rule": None}
    started.clear()
    resumed = command.get("run_id")
    with (
        agentops.resume_run(resumed) if resumed else contextlib.nullcontext(),
        agentops.run(AGENT) as run,
    ):
        answer["run_id"] = run.run_id
        try:
            answer["result"] = send_email(**command["send"])
        except agentops.EnforcementError as exc:
            answer |= {
                "outcome": type(exc).__name__,
                "message": str(exc),
                "rule": getattr(exc, "rule", None),
            }
    return answer | {"started": started[0] if started else None}


def held_policy() -> int | None:
    """The version of the hub's policy set the SDK holds."""
    client = get_client()
    assert client is not None
    policy = client.enforcer.link.snapshot.values.get(TOPIC)
    return None if policy is None else policy.version


def main() -> None:
    agentops.init()
    print(json.dumps({"ready": time.time(), "policy": held_policy()}), flush=True)
    for line in sys.stdin:
        if line.strip():
            command = json.loads(line)
            answer = send(command) if "send" in command else {"unknown": command}
            print(json.dumps(answer), flush=True)
    agentops.shutdown(5.0)


if __name__ == "__main__":
    main()
