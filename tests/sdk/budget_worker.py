"""One SDK process of the budget concurrency test: ``python -m tests.sdk.budget_worker SPEC``.

``SPEC`` (JSON) names the hub (``hub_url``, ``api_key``), how many ``threads`` and asyncio
``tasks`` make ``calls`` chat calls each (the ``j``-th with ``max_tokens[j % len]``), the fake
LLM's ``latency`` (seconds at most, drawn per call) and a ``seed``. The LLM answers each call
with a random number of output tokens up to its ``max_tokens``, so what it costs is at or under
what was reserved. Prints one JSON line: calls ``admitted``, ``refused`` (``BudgetExceeded``),
``unavailable`` (``EnforcementUnavailable``) and what the admitted calls cost (``spent``), then
shuts the SDK down (its spans reach the hub; its leases are released).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
from decimal import Decimal
from typing import Any

import agentops_sdk as agentops
from agentops_sdk import pricing
from tests.sdk.fake_llm import MODEL, FakeLLM

MESSAGES = [{"role": "user", "content": "hello"}]


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.admitted = self.refused = self.unavailable = 0
        self.spent = Decimal(0)

    def ran(self, response: Any) -> None:
        usage = {
            "input_tokens": response.usage.prompt_tokens,
            "output_tokens": response.usage.completion_tokens,
        }
        cost = pricing.price(MODEL, usage)
        assert cost is not None
        with self.lock:
            self.admitted += 1
            self.spent += cost

    def stopped(self, exc: BaseException) -> None:
        with self.lock:
            if isinstance(exc, agentops.BudgetExceeded):
                self.refused += 1
            else:
                self.unavailable += 1


def main(spec: dict[str, Any]) -> None:
    agentops.init(
        hub_url=spec["hub_url"],
        api_key=spec["api_key"],
        spool=False,
        integrations=["openai"],
        flush_interval=0.2,
        hub_wait=30.0,
        budget_wait=10.0,
    )
    rng = random.Random(spec["seed"])
    lock = threading.Lock()

    def draw(high: float) -> float:
        with lock:
            return rng.uniform(0, high)

    llm = FakeLLM(
        output_tokens=lambda body: int(draw(body["max_tokens"] + 0.999)),
        latency=lambda: draw(spec["latency"]),
    )
    tally = Tally()
    sizes = spec["max_tokens"]
    calls = spec["calls"]

    def thread_calls() -> None:
        client = llm.client()
        for j in range(calls):
            try:
                with agentops.run("spender"):
                    tally.ran(
                        client.chat.completions.create(
                            model=MODEL,
                            messages=MESSAGES,  # type: ignore[arg-type]
                            max_tokens=sizes[j % len(sizes)],
                        )
                    )
            except (agentops.BudgetExceeded, agentops.EnforcementUnavailable) as exc:
                tally.stopped(exc)

    async def task_calls(client: Any) -> None:
        for j in range(calls):
            try:
                async with agentops.run("spender"):
                    tally.ran(
                        await client.chat.completions.create(
                            model=MODEL, messages=MESSAGES, max_tokens=sizes[j % len(sizes)]
                        )
                    )
            except (agentops.BudgetExceeded, agentops.EnforcementUnavailable) as exc:
                tally.stopped(exc)

    async def all_tasks() -> None:
        client = llm.async_client()
        await asyncio.gather(*(task_calls(client) for _ in range(spec["tasks"])))

    workers = [threading.Thread(target=thread_calls) for _ in range(spec["threads"])]
    if spec["tasks"]:
        workers.append(threading.Thread(target=lambda: asyncio.run(all_tasks())))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(
        json.dumps(
            {
                "admitted": tally.admitted,
                "refused": tally.refused,
                "unavailable": tally.unavailable,
                "spent": str(tally.spent),
            }
        ),
        flush=True,
    )
    agentops.shutdown()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
