"""The bound budgets promise, as a property: however many SDK processes, threads and asyncio
tasks call at once, calls admitted under a hard budget never reserve, nor spend, past it.

Each example starts 1 to 4 real SDK processes (:mod:`tests.sdk.budget_worker`), each with
threads and asyncio tasks making chat calls through the real ``openai`` client to a fake LLM
with random latency, whose answers cost at or under what the SDK reserved. The worst cases of
all the calls sum to three times the budget. The hub is :class:`~tests.sdk.fake_hub.FakeHub`
(its ledger is charged from the spans the processes deliver). The processes are given only
the hub's URL and key: ``tests/e2e/test_budgets.py`` runs the same property against the real
hub, on SQLite and on PostgreSQL + Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from agentops_sdk import pricing
from agentops_sdk.enforcement.budget_costs import input_bound
from tests.sdk.budget_worker import MESSAGES
from tests.sdk.fake_budgets import budget
from tests.sdk.fake_hub import FakeHub
from tests.sdk.fake_llm import MODEL

pytestmark = pytest.mark.extras  # openai, LangChain and the pricing extra

REPO = Path(__file__).resolve().parents[2]
KEY = "ak_budget_concurrency"
EXAMPLES = int(os.environ.get("AGENTOPS_BUDGET_EXAMPLES", "10"))


def worst_case(max_tokens: int) -> Decimal:
    worst = pricing.worst_case(MODEL, input_bound({"messages": MESSAGES}), max_tokens)
    assert worst is not None
    return worst


# No shrinking: each example starts processes; a failure reports its example as drawn.
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(
    processes=st.integers(1, 4),
    threads=st.integers(1, 3),
    tasks=st.integers(0, 3),
    calls=st.integers(2, 6),
    max_tokens=st.lists(st.sampled_from([20, 100, 400, 1600]), min_size=1, max_size=4),
    latency=st.sampled_from([0.0, 0.005, 0.02]),
    seed=st.integers(0, 2**32 - 1),
)
def test_admitted_calls_never_reserve_nor_spend_past_a_hard_budget(
    processes: int,
    threads: int,
    tasks: int,
    calls: int,
    max_tokens: list[int],
    latency: float,
    seed: int,
) -> None:
    per_unit = sum(worst_case(max_tokens[j % len(max_tokens)]) for j in range(calls))
    asked = per_unit * (threads + tasks) * processes
    limit = (asked / 3).quantize(Decimal("1e-10"), rounding=ROUND_FLOOR)
    hub = FakeHub().start()
    try:
        capped = budget(limit, name="shared")
        hub.budgets.publish([capped])
        spec = {
            "hub_url": hub.url,
            "api_key": KEY,
            "threads": threads,
            "tasks": tasks,
            "calls": calls,
            "max_tokens": max_tokens,
            "latency": latency,
        }
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.sdk.budget_worker",
                    json.dumps({**spec, "seed": seed + number}),
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for number in range(processes)
        ]
        results = []
        for worker in workers:
            out, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0, out
            results.append(json.loads(out.strip().splitlines()[-1]))

        spent = sum(Decimal(result["spent"]) for result in results)
        admitted = sum(result["admitted"] for result in results)
        if min(worst_case(size) for size in max_tokens) <= limit:
            assert admitted > 0, results  # a call that fits the budget alone is not refused
        assert sum(result["unavailable"] for result in results) == 0, results
        assert spent <= limit
        assert hub.budgets.peak.get(capped.id, Decimal(0)) <= limit
        assert hub.budgets.wait_for(lambda d: d.live(capped.id) == [], 10.0)
        assert hub.budgets.committed(capped.id) <= limit
    finally:
        hub.stop()
