"""Budgets with real processes: a real ``agentops-hub serve`` on SQLite, and one on PostgreSQL
with Redis (its derived work, which charges the ledger, run by a real ``agentops-hub worker``),
and SDK processes (:mod:`tests.sdk.budget_worker`, :mod:`tests.e2e.agent_budgets`) given only
the hub's URL and an org's key.

Specification: however many SDK processes, threads and asyncio tasks call at once, with worst
cases summing to three times the budget, what the hub has admitted (its ledger's spend and what
its leases hold back) never passes the limit, and neither does what the admitted calls cost,
as the SDKs priced it and as the hub charged it (nor the tokens they used, past a token limit
of a third of their worst cases); a process killed while its call holds a
reservation strands it no longer than its lease's TTL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from agentops_sdk import pricing
from agentops_sdk.contract.budgets import BudgetState
from agentops_sdk.enforcement.budget_costs import input_bound
from agentops_server.db.migrate import upgrade
from tests.e2e.agents import ROOT, AgentProcess, agent_starter
from tests.e2e.hubs import SharedHub, hub, worker
from tests.sdk.budget_worker import MESSAGES
from tests.sdk.fake_llm import MODEL
from tests.server.conftest import make_org, postgresql_schema
from tests.server.principals import SECRET_KEY
from tests.server.servers import wait_until

pytestmark = pytest.mark.extras  # openai and the pricing extra, in the SDK processes

REDIS_URL = "redis://127.0.0.1:6379/0"
EXAMPLES = int(os.environ.get("AGENTOPS_BUDGET_EXAMPLES", "6"))
"""Examples per database (each starts 1 to 4 SDK processes)."""
SETTLED = 60.0
"""How long the hub may take to charge the spans of finished processes and end their leases."""
TTL = 2.0
"""The lease TTL of the process killed while holding a reservation."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql+redis"])
def budget_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedHub]:
    """A hub process on SQLite (derived work in the process), or on PostgreSQL with Redis (pub/sub
    and the queue of derived work, run by a worker process)."""
    with ExitStack() as stack:
        folder = tmp_path_factory.mktemp("budgets-hub")
        settings = {
            "secret_key": SECRET_KEY,
            "rate_limit_key": "100000/minute",
            "rate_limit_org": "100000/minute",
        }
        if request.param == "sqlite":
            database_url = f"sqlite:///{folder / 'hub.db'}"
            upgrade(database_url)
        else:
            database_url = stack.enter_context(postgresql_schema())
            upgrade(database_url)
            queue = f"budgets-{uuid.uuid4().hex[:12]}"
            settings |= {"redis_url": REDIS_URL, "queue_name": queue}
            stack.enter_context(worker(database_url, REDIS_URL, queue, folder / "worker.log"))
        process = stack.enter_context(hub(database_url, port=0, **settings))
        yield SharedHub(process.url, database_url, process.log)


class Budgets:
    """One org's budgets API on the hub, as its all-scopes key uses it."""

    def __init__(self, served: SharedHub) -> None:
        self.key = make_org(served.database_url, f"spenders {uuid.uuid4().hex[:8]}").key
        self.http = httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    def create(self, limit: Decimal, limit_tokens: int | None = None) -> str:
        """A hard org-wide ``total`` budget of ``limit`` USD (and ``limit_tokens``); its id."""
        body = {
            "name": "shared",
            "scope": {"kind": "org"},
            "limit_usd": str(limit),
            "limit_tokens": limit_tokens,
            "period": "total",
        }
        response = self.http.post("/api/v1/budgets", json=body)
        assert response.status_code == 201, response.text
        budget_id: str = response.json()["budget"]["id"]
        return budget_id

    def state(self, budget_id: str) -> BudgetState:
        response = self.http.get(f"/api/v1/budgets/{budget_id}/state")
        assert response.status_code == 200, response.text
        return BudgetState.model_validate_json(response.content)

    def settled(self, budget_id: str) -> BudgetState | None:
        """The budget's state once no lease is outstanding and nothing is held back (every
        reported spend charged); None while it is not."""
        found = self.state(budget_id)
        return found if found.outstanding_leases == 0 and found.reserved_usd == 0 else None


class PeakWatch:
    """Reads a budget's state over and over on a thread, keeping the most the hub ever had
    admitted (spent and held back by leases) at once."""

    def __init__(self, budgets: Budgets, budget_id: str) -> None:
        self.peak = Decimal(0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(budgets, budget_id))
        self._thread.start()

    def stop(self) -> Decimal:
        self._stop.set()
        self._thread.join(30)
        return self.peak

    def _watch(self, budgets: Budgets, budget_id: str) -> None:
        while not self._stop.wait(0.02):
            found = budgets.state(budget_id)
            self.peak = max(self.peak, found.spent_usd + found.reserved_usd)


def worst_tokens(max_tokens: int) -> int:
    return input_bound({"messages": MESSAGES}) + max_tokens


def worst_case(max_tokens: int) -> Decimal:
    worst = pricing.worst_case(MODEL, input_bound({"messages": MESSAGES}), max_tokens)
    assert worst is not None
    return worst


def run_workers(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one :mod:`tests.sdk.budget_worker` process per spec at once; their tallies."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AGENTOPS_")}
    env["PYTHONPATH"] = str(ROOT)
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.sdk.budget_worker", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    results = []
    try:
        for process in workers:
            out, _ = process.communicate(timeout=180)
            assert process.returncode == 0, out
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


# No shrinking: each example starts processes; a failure reports its example as drawn.
@settings(max_examples=EXAMPLES, deadline=None, phases=(Phase.explicit, Phase.generate))
@given(
    processes=st.integers(1, 4),
    threads=st.integers(1, 3),
    tasks=st.integers(0, 3),
    calls=st.integers(2, 5),
    max_tokens=st.lists(st.sampled_from([20, 100, 400, 1600]), min_size=1, max_size=4),
    latency=st.sampled_from([0.0, 0.005, 0.02]),
    seed=st.integers(0, 2**32 - 1),
    tokens_too=st.booleans(),
)
def test_concurrent_sdk_processes_never_get_admitted_nor_spend_past_a_hard_budget(
    budget_hub: SharedHub,
    processes: int,
    threads: int,
    tasks: int,
    calls: int,
    max_tokens: list[int],
    latency: float,
    seed: int,
    tokens_too: bool,
) -> None:
    sizes = [max_tokens[j % len(max_tokens)] for j in range(calls)]
    callers = (threads + tasks) * processes
    limit = (sum(map(worst_case, sizes), Decimal(0)) * callers / Decimal(3)).quantize(
        Decimal("1e-10"), rounding=ROUND_FLOOR
    )
    limit_tokens = sum(map(worst_tokens, sizes)) * callers // 3 if tokens_too else None
    budgets = Budgets(budget_hub)
    budget_id = budgets.create(limit, limit_tokens)
    spec = {
        "hub_url": budget_hub.url,
        "api_key": budgets.key,
        "threads": threads,
        "tasks": tasks,
        "calls": calls,
        "max_tokens": max_tokens,
        "latency": latency,
    }
    watch = PeakWatch(budgets, budget_id)
    try:
        results = run_workers([{**spec, "seed": seed + number} for number in range(processes)])
    finally:
        peak = watch.stop()
    settled = wait_until(lambda: budgets.settled(budget_id), SETTLED)

    spent = sum(Decimal(result["spent"]) for result in results)
    admitted = sum(result["admitted"] for result in results)
    assert sum(result["unavailable"] for result in results) == 0, results
    smallest = min(sizes)
    fits = limit_tokens is None or worst_tokens(smallest) <= limit_tokens
    if worst_case(smallest) <= limit and fits:
        assert admitted > 0, results  # a call that fits the budget alone is not refused
    assert peak <= limit, "the hub never admitted more than the budget at once"
    assert spent <= limit, "what the admitted calls cost stays within the limit"
    assert settled, f"the leases did not end: {budgets.state(budget_id)}"
    assert settled.spent_usd == spent, "the hub charged what the SDKs priced"
    assert settled.spent_usd <= limit
    if limit_tokens is not None:
        assert settled.spent_tokens <= limit_tokens, "nor past its token limit"
    budgets.http.close()


# -- a crashed process -----------------------------------------------------------------------------


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Any]:
    """``start_agent(hub_url, api_key, **options)``: an ``agent_budgets`` process."""
    with agent_starter("tests.e2e.agent_budgets", tmp_path / "spool") as start:
        yield start


def test_a_process_killed_holding_a_reservation_strands_it_no_longer_than_its_lease_ttl(
    budget_hub: SharedHub, start_agent: Any
) -> None:
    budgets = Budgets(budget_hub)
    budget_id = budgets.create(Decimal(1))
    agent: AgentProcess = start_agent(budget_hub.url, budgets.key, budget_lease_ttl=TTL)
    agent.send(hold=True)  # a call that never ends: it holds its reservation until killed
    assert agent.answer()["holding"]
    held = budgets.state(budget_id)
    assert (held.outstanding_leases, held.reserved_usd > 0) == (1, True)

    agent.kill()
    killed_at = time.monotonic()
    still = budgets.state(budget_id)
    returned = wait_until(lambda: budgets.settled(budget_id), SETTLED)
    waited = time.monotonic() - killed_at

    assert still.reserved_usd > 0, "a live lease holds its reservation until its TTL"
    assert returned, f"the reservation never returned: {budgets.state(budget_id)}"
    assert (returned.remaining_usd, returned.spent_usd) == (Decimal(1), Decimal(0))
    assert waited <= TTL + 1.0, f"it returned {waited:.1f} s after the kill"
    budgets.http.close()
