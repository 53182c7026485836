"""What budgets cost an LLM call, and how far calls overrun a hard budget under contention.

    pip install -e ".[bench,pricing]"
    python benchmarks/budgets.py [--calls 20000] [--rounds 5] [--renewals 500] [--runs 10]
    python benchmarks/budgets.py --hub-url http://127.0.0.1:8000 --api-key ak_...  # a real hub

Against the tests' fake hub on 127.0.0.1 (``tests/sdk/fake_hub.py``: real HTTP, leases granted
under a lock; in a process of its own for sections 1 and 2) unless ``--hub-url`` names a hub
whose org has a budget large enough for the calls (then section 1 only, without the idle
variant).

1. Admission from a local lease: a hand-written ``@agentops.llm`` call (``gpt-4o-mini``, one
   message, ``max_tokens`` 100, an OpenAI-shaped usage returned) timed call by call
   (``perf_counter_ns``), interleaved rounds: bare; decorated with the budget stage idle (the org
   has no budget); decorated under a budget, reserving its worst case from the lease held and
   reconciling to its cost after (the fake hub publishes the budget, or an empty set, before
   each round: the stage engages or idles as it would). The budget's overhead is the
   difference of the last two. Spans are discarded (``sdk_overhead.py``'s exporter).
2. Renewal: the same call when every call must wait for the hub to grant more on its lease
   (the lease thread told to ask for one call's worth at a time, on a budget of its own): a
   round trip on loopback, with the lease thread's wake-up (fake hub only).
3. Overrun: ``--runs`` randomised runs of the concurrency test's scenario (4 SDK processes of
   ``tests/sdk/budget_worker.py``, 3 threads and 3 asyncio tasks each, worst cases summing to
   three times the budget, a fake LLM answering at or under each estimate after up to 20 ms):
   the most spent past the limit, and the most the hub ever had committed past it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agentops_sdk as agentops  # noqa: E402
from agentops_sdk import pricing  # noqa: E402
from agentops_sdk.enforcement.budget_costs import input_bound  # noqa: E402
from agentops_sdk.enforcement.budgets import BudgetStage  # noqa: E402
from tests.sdk.fake_budgets import budget  # noqa: E402
from tests.sdk.fake_hub import FakeHub  # noqa: E402

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "hello"}]
USAGE = {"usage": {"prompt_tokens": 1, "completion_tokens": 100}, "model": MODEL}


def complete(messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:  # noqa: ARG001
    """A chat call's shape (what the budget stage reads), answering at once."""
    return USAGE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--renewals", type=int, default=500)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hub-url")
    parser.add_argument("--api-key", default="ak_bench")
    arguments = parser.parse_args()

    if arguments.hub_url is not None:
        admission(arguments.hub_url, arguments, None)
        return
    with FakeHubProcess() as fake:
        fake.publish([("1000000", "bench")])
        admission(fake.url, arguments, fake)
    overrun(arguments.runs)


class FakeHubProcess:
    """``python -m tests.sdk.fake_hub 0``: the fake hub in a process of its own, which
    publishes the budgets it is sent."""

    def __enter__(self) -> FakeHubProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sdk.fake_hub", "0"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        return self

    def publish(self, budgets: list[tuple[str, str]]) -> list[uuid.UUID]:
        """Make ``budgets`` (limit, name) the org's; their ids."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(budgets) + "\n")
        self.process.stdin.flush()
        return [uuid.UUID(text) for text in json.loads(self.process.stdout.readline())]

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


def admission(hub_url: str, arguments: argparse.Namespace, fake: FakeHubProcess | None) -> None:
    """Sections 1 and 2: per-call times, in one process."""
    agentops.init(
        hub_url=hub_url,
        api_key=arguments.api_key,
        spool=False,
        capture=False,
        hub_wait=10.0,
        exporter=_overhead_benchmark().DiscardExporter(),
    )
    call = agentops.llm(model=MODEL)(complete)
    client = agentops.get_client()
    assert client is not None
    (stage,) = [s for s in client.enforcer.stages if isinstance(s, BudgetStage)]

    def engaged(budgets: list[tuple[str, str]]) -> None:
        if fake is None:
            return
        fake.publish(budgets)
        deadline = time.monotonic() + 10
        while (stage in client.enforcer.stages) != bool(budgets):
            if time.monotonic() > deadline:
                raise SystemExit("the budget stage did not follow the hub's budgets")
            time.sleep(0.001)

    bare: list[int] = []
    idle: list[int] = []
    budgeted: list[int] = []
    with agentops.run("bench"):
        for _ in range(arguments.rounds):
            bare += timed(lambda: complete(MESSAGES, 100), arguments.calls)
            if fake is not None:
                engaged([])
                idle += timed(lambda: call(MESSAGES, 100), arguments.calls)
                engaged([("1000000", "bench")])
            budgeted += timed(lambda: call(MESSAGES, 100), arguments.calls)

        renewing = renewals(stage, fake, arguments.renewals, lambda: call(MESSAGES, 100))
    print(f"admission, {arguments.rounds} rounds x {arguments.calls} calls")
    print(f"{'variant':<46}{'p50 us':>10}{'p99 us':>10}")
    for name, times in (
        ("bare function", bare),
        ("@agentops.llm, budget stage idle", idle),
        ("@agentops.llm, reserving from the lease held", budgeted),
    ):
        if times:
            print(f"{name:<46}{pct(times, 0.5):>10.2f}{pct(times, 0.99):>10.2f}")
    if idle:
        print(
            f"{'budget overhead (reserving - idle)':<46}"
            f"{pct(budgeted, 0.5) - pct(idle, 0.5):>10.2f}"
            f"{pct(budgeted, 0.99) - pct(idle, 0.99):>10.2f}"
        )
    if renewing:
        print(
            f"{'each call waiting for more on its lease':<46}"
            f"{pct(renewing, 0.5):>10.2f}{pct(renewing, 0.99):>10.2f}"
            f"   ({arguments.renewals} calls)"
        )
    agentops.shutdown()


def renewals(stage: BudgetStage, fake: FakeHubProcess | None, calls: int, call: Any) -> list[int]:
    """Section 2: the lease thread told to ask for one call's worth at a time, on a budget of
    its own (the fake hub's: a real hub's org would need one made for it), so that every call
    waits for the hub to grant more."""
    if fake is None:
        return []
    keeper = stage.keeper
    keeper.calls_per_lease, keeper.low_calls = 1, 0
    keeper.least, keeper.ahead = Decimal("1e-10"), Decimal(0)
    (renewing,) = fake.publish([("1000000", "renewing")])
    deadline = time.monotonic() + 10
    while renewing not in keeper.accounts:
        if time.monotonic() > deadline:
            raise SystemExit("the new budget did not reach the client")
        time.sleep(0.001)
    return timed(call, calls)


def overrun(runs: int) -> None:
    """Section 3: the concurrency scenario, ``runs`` times."""
    worst: dict[int, Decimal] = {}
    for size in (20, 100, 400, 1600):
        priced = pricing.worst_case(MODEL, input_bound({"messages": MESSAGES}), size)
        assert priced is not None
        worst[size] = priced
    rng = random.Random(7)
    spent_over = committed_over = Decimal(0)
    admitted = refused = 0
    for _ in range(runs):
        sizes = [rng.choice(list(worst)) for _ in range(rng.randint(1, 4))]
        calls = rng.randint(2, 6)
        per_unit = sum((worst[sizes[j % len(sizes)]] for j in range(calls)), Decimal(0))
        limit = (per_unit * 6 * 4 / 3).quantize(Decimal("1e-10"))
        hub = FakeHub().start()
        try:
            capped = budget(limit, name="shared")
            hub.budgets.publish([capped])
            spec = {
                "hub_url": hub.url,
                "api_key": "ak_bench",
                "threads": 3,
                "tasks": 3,
                "calls": calls,
                "max_tokens": sizes,
                "latency": 0.02,
            }
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            workers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.sdk.budget_worker",
                        json.dumps({**spec, "seed": rng.randrange(2**32)}),
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(4)
            ]
            results = [json.loads(w.communicate(timeout=300)[0].splitlines()[-1]) for w in workers]
            spent = sum(Decimal(r["spent"]) for r in results)
            admitted += sum(r["admitted"] for r in results)
            refused += sum(r["refused"] + r["unavailable"] for r in results)
            spent_over = max(spent_over, spent - limit)
            committed_over = max(committed_over, hub.budgets.peak.get(capped.id, limit) - limit)
        finally:
            hub.stop()
    print(
        f"overrun, {runs} runs x 4 processes x (3 threads + 3 tasks): {admitted} calls admitted, "
        f"{refused} refused; most spent past the limit ${max(spent_over, Decimal(0))}, "
        f"most committed past it ${max(committed_over, Decimal(0))}"
    )


def _overhead_benchmark() -> Any:
    """``benchmarks/sdk_overhead.py`` as a module: its discarding exporter is shared."""
    spec = importlib.util.spec_from_file_location(
        "sdk_overhead", ROOT / "benchmarks/sdk_overhead.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(function: Any, calls: int) -> list[int]:
    clock = time.perf_counter_ns
    times = []
    for _ in range(calls):
        started = clock()
        function()
        times.append(clock() - started)
    return times


def pct(times: list[int], q: float) -> float:
    """The ``q`` quantile (nearest rank) in microseconds."""
    if q == 0.5:
        return statistics.median(times) / 1000
    ordered = sorted(times)
    return ordered[max(0, int(q * len(ordered) + 0.5) - 1)] / 1000


if __name__ == "__main__":
    main()
