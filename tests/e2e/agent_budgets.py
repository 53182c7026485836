"""An agent process making chat calls under the org's budgets (``python -m
tests.e2e.agent_budgets``), with the real ``openai`` client on a fake LLM, configured from
``AGENTOPS_*`` variables (see :mod:`tests.e2e.agents`).

Commands: ``{"hold": true}`` starts a call whose answer never comes (it holds its budget
reservation until the process ends), answering ``{"holding": true}`` once its request has
reached the LLM, so once its reservation is made.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import agentops_sdk as agentops
from tests.sdk.fake_llm import FakeLLM, ask

NEVER = 3600.0


def main() -> None:
    client = agentops.init(integrations=["openai"])
    assert client is not None, "AGENTOPS_ENABLED is off"
    print(json.dumps({"ready": time.time()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("hold"):
            print(json.dumps({"holding": hold()}), flush=True)
    client.shutdown(5.0)


def hold() -> bool:
    """Start a call whose answer never comes; whether its request reached the LLM."""
    reached = threading.Event()

    def never() -> float:
        reached.set()
        return NEVER

    llm = FakeLLM(latency=never)
    threading.Thread(target=ask, args=(llm.client(),), daemon=True).start()
    return reached.wait(60)


if __name__ == "__main__":
    main()
