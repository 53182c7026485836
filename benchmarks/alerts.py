"""Budget alert delivery: from the LLM call that crosses a threshold to the alert's webhook.

    pip install -e ".[server,bench,pricing]"
    python benchmarks/alerts.py [--alerts 40] [--databases postgresql,sqlite]
                                [--redis-url redis://127.0.0.1:6379/13]

For each database: a fresh one (a PostgreSQL database on 127.0.0.1:5432, the hub on Redis with
one ``agentops-hub worker`` process running derived work; or a SQLite file, the hub on its
embedded backends, derived work in the hub), one ``agentops-hub serve`` process, an org
bootstrapped with the CLI, a webhook subscribed to ``budget.alert`` pointing at a receiver in
this process, and ``--alerts`` hard budgets of $0.001 with one threshold (50%), each scoped to an
agent of its own. The SDK runs in this process with the hub's URL and the org's key, as an
agent would (default settings: events shipped every second).

Then, in sequence, one ``@agentops.llm`` call per budget (``gpt-4o-mini``, 1,000 input and
1,000 output tokens reported: $0.00075, 75% of the limit) in a run of that budget's agent; the
clock starts when the call returns and stops when the receiver gets the budget's
``budget.alert``. That is the whole path: the SDK's batch, ingest, pricing, the charge and the
alert as derived work, the webhook's delivery. Target: p95 <= 10 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

import agentops_sdk as agentops

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gpt-4o-mini"
DEADLINE = 60.0
"""How long one alert may take at most before the benchmark gives up."""
BACKENDS = {"postgresql": "PostgreSQL + Redis", "sqlite": "SQLite, embedded"}


def _benchmark(name: str) -> ModuleType:
    """Another benchmark's module: its helpers are shared, not copied."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_benchmark", ROOT / f"benchmarks/{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@agentops.llm(model=MODEL)
def crossing_call(messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:  # noqa: ARG001
    """A chat call's shape: 1,000 tokens in and out, reported like OpenAI's usage."""
    return {"usage": {"prompt_tokens": 1000, "completion_tokens": 1000}, "model": MODEL}


class Receiver:
    """Webhook deliveries by budget name, with the time each arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._changed = threading.Condition()

    def note(self, body: bytes) -> None:
        payload = json.loads(body)
        if payload.get("type") != "budget.alert":
            return
        with self._changed:
            self.arrived.setdefault(payload["data"]["name"], time.time())
            self._changed.notify_all()

    def wait_for(self, name: str) -> float:
        deadline = time.monotonic() + DEADLINE
        with self._changed:
            while name not in self.arrived:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"no alert for {name} within {DEADLINE:.0f} s")
                self._changed.wait(left)
            return self.arrived[name]


@contextmanager
def receiving() -> Iterator[tuple[str, Receiver]]:
    """A webhook receiver on 127.0.0.1: its URL and what it got."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.end_headers()
            receiver.note(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", receiver
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=40)
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    arguments = parser.parse_args()

    ingest = _benchmark("ingest")
    print(f"{arguments.alerts} threshold crossings in sequence, 1 hub process, the SDK in-process")
    print(f"{'hub':<22}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}{'max s':>8}{'alerts':>8}")
    for database in arguments.databases.split(","):
        with ingest.fresh_database(database) as database_url:
            latencies = measure(ingest, database, database_url, arguments)
        report(BACKENDS[database], latencies)


def measure(
    ingest: ModuleType, database: str, database_url: str, arguments: argparse.Namespace
) -> list[float]:
    """Seconds from each crossing call's return to its alert's webhook."""
    env = {name: v for name, v in os.environ.items() if not name.startswith("AGENTOPS_")}
    env |= {
        "AGENTOPS_DATABASE_URL": database_url,
        "AGENTOPS_SECRET_KEY": uuid.uuid4().hex,
        "AGENTOPS_WEBHOOKS_ALLOW_PRIVATE": "true",
        "AGENTOPS_RATE_LIMIT_KEY": "1000000/minute",
        "AGENTOPS_RATE_LIMIT_ORG": "1000000/minute",
    }
    if database == "postgresql":
        env["AGENTOPS_REDIS_URL"] = arguments.redis_url
    subprocess.run([*ingest.HUB, "db", "upgrade"], env=env, check=True, capture_output=True)
    bootstrap = subprocess.run(
        [*ingest.HUB, "bootstrap", "--org", "bench", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = json.loads(bootstrap.stdout.strip().splitlines()[-1])["api_key"]
    port = ingest.free_port()
    url = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    with (
        ingest.hub_process(env, port, 1),
        worker_process(ingest, env) if database == "postgresql" else nullcontext(),
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as hub,
        receiving() as (hook_url, receiver),
        tempfile.TemporaryDirectory() as folder,
    ):
        ingest.wait_until_up(url)
        hub.post("/api/v1/webhooks", json={"url": hook_url, "events": ["budget.alert"]})
        names = [f"alerts-{index}" for index in range(arguments.alerts)]
        for name in names:
            made = hub.post(
                "/api/v1/budgets",
                json={
                    "name": name,
                    "scope": {"kind": "agent", "value": name},
                    "limit_usd": "0.001",
                    "period": "monthly",
                    "thresholds": [50],
                },
            )
            made.raise_for_status()
        agentops.init(
            hub_url=url,
            api_key=api_key,
            spool_dir=Path(folder) / "spool",
            hub_wait=10.0,
            budget_wait=10.0,  # what is timed starts after the call: a slow lease is no error
        )
        try:
            for name in names:
                with agentops.run(name):
                    crossing_call([{"role": "user", "content": "hi"}], 1000)
                crossed = time.time()
                latencies.append(receiver.wait_for(name) - crossed)
        finally:
            agentops.shutdown()
    return latencies


@contextmanager
def worker_process(ingest: ModuleType, env: dict[str, str]) -> Iterator[None]:
    """``agentops-hub worker``: derived work from the queue on Redis."""
    process = subprocess.Popen(
        [*ingest.HUB, "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def report(hub: str, latencies: list[float]) -> None:
    """One line: latency percentiles (nearest rank) in seconds."""
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    figures = "".join(f"{rank(q):>8.2f}" for q in (0.5, 0.95, 0.99, 1.0))
    print(f"{hub:<22}{figures}{len(ordered):>8}")


if __name__ == "__main__":
    main()
