"""Spans durably stored per second through ``POST /api/v1/ingest/batch``, on SQLite and PostgreSQL.

    pip install -e ".[server,bench]"
    python benchmarks/ingest.py [--seconds 10] [--clients 4] [--spans-per-batch 500]
                                [--databases sqlite,postgresql] [--pricing off,on]

For each database: a fresh database (a SQLite file, or a fresh PostgreSQL database on
127.0.0.1:5432), ``agentops-hub serve`` as its own process on a free port, an org bootstrapped
with the CLI, then ``--clients`` client processes posting gzip batches (a run and its spans, as
the SDK sends them, every id unique) as fast as the hub acknowledges them, for ``--seconds``.
Only what is durably stored counts: the spans are counted in the database after the run, and
divided by the time from the first request to the last acknowledgement. Request latency
percentiles are over every acknowledged request. Payloads are built before the clock starts, so
the clients spend their time waiting on the hub, not making JSON.

``--vary pricing`` (the default, with ``--pricing off,on``) measures each database twice in the
same run, the hub started with ``AGENTOPS_PRICING=false`` then ``true`` (two of every three spans
are LLM calls, priced in the ingest transaction, their runs totalled in it too, as the batch
carries the run), and prints what pricing costs in throughput. ``--vary rollups`` does the same
with ``AGENTOPS_ROLLUPS`` (the analytics' rollups, derived work in the hub process), pricing on.
``--repeat N`` alternates the two N times and shows medians.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

HUB = [sys.executable, "-m", "agentops_server.cli"]
PG_ADMIN = "postgresql://root@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--spans-per-batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="hub processes")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--vary",
        choices=["pricing", "rollups"],
        default="pricing",
        help="the setting measured off and on (the other stays on)",
    )
    parser.add_argument("--pricing", default="off,on", help="off, on, or both: off,on")
    parser.add_argument("--rollups", default="off,on", help="off, on, or both: off,on")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of each setting, alternated; medians shown"
    )
    arguments = parser.parse_args()

    print(
        f"{arguments.clients} clients, {arguments.spans_per_batch} spans per batch, "
        f"{arguments.seconds:.0f} s, {arguments.workers} hub worker(s)"
    )
    vary = arguments.vary
    print(
        f"{'database':<12}{vary:<9}{'spans/s stored':>16}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}"
    )
    for database in arguments.databases.split(","):
        rounds: dict[str, list[dict[str, float]]] = {}
        for _ in range(arguments.repeat):  # alternated, so a busy spell hits both settings
            for state in getattr(arguments, vary).split(","):
                with fresh_database(database) as url:
                    measured = measure(url, arguments, {vary: state == "on"})
                    rounds.setdefault(state, []).append(measured)
        rates: dict[str, float] = {}
        for state, results in rounds.items():
            median = {key: statistics.median(r[key] for r in results) for key in results[0]}
            rates[state] = median["spans_per_second"]
            print(
                f"{database:<12}{state:<9}{median['spans_per_second']:>16,.0f}"
                f"{median['requests']:>10.0f}{median['p50_ms']:>9.1f}{median['p99_ms']:>9.1f}"
            )
        if {"off", "on"} <= rates.keys():
            print(f"{database}: {vary} costs {1 - rates['on'] / rates['off']:.1%} of throughput")


def measure(
    database_url: str, arguments: argparse.Namespace, switches: dict[str, bool] | None = None
) -> dict[str, float]:
    """One round on a fresh database; ``switches``: settings turned on or off (pricing,
    rollups), the others on."""
    env = {**os.environ, "AGENTOPS_DATABASE_URL": database_url}
    for name in ("pricing", "rollups"):
        env[f"AGENTOPS_{name.upper()}"] = "true" if (switches or {}).get(name, True) else "false"
    subprocess.run([*HUB, "db", "upgrade"], env=env, check=True, capture_output=True)
    bootstrap = subprocess.run(
        [*HUB, "bootstrap", "--org", "bench", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = json.loads(bootstrap.stdout.strip().splitlines()[-1])["api_key"]
    port = free_port()
    with hub_process(env, port, arguments.workers):
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager, ctx.Pool(arguments.clients) as pool:
            start = manager.Barrier(arguments.clients)  # all clients start their clocks together
            jobs = [
                (url, api_key, arguments.seconds, arguments.spans_per_batch, index, start)
                for index in range(arguments.clients)
            ]
            outcomes = pool.starmap(run_client, jobs)
    stored = count_spans(database_url)
    latencies = sorted(latency for outcome in outcomes for latency in outcome["latencies"])
    first = min(outcome["first"] for outcome in outcomes)
    last = max(outcome["last"] for outcome in outcomes)
    acknowledged = sum(outcome["spans"] for outcome in outcomes)
    if stored < acknowledged:
        raise SystemExit(f"only {stored} of {acknowledged} acknowledged spans are stored")
    return {
        "spans_per_second": stored / (last - first),
        "requests": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def run_client(
    url: str, api_key: str, seconds: float, spans_per_batch: int, index: int, start: Any
) -> dict[str, Any]:
    """One client: post prepared batches until ``seconds`` have passed, starting when every
    client has made its payloads (``start``: a barrier), so the clients' clocks overlap."""
    # Enough unique payloads for 50,000 spans/s from this client alone: never the limit.
    bodies = [make_batch(spans_per_batch) for _ in range(int(seconds * 50_000 / spans_per_batch))]
    start.wait(300)
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    latencies: list[float] = []
    spans = 0
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        first = time.perf_counter()
        deadline = first + seconds
        last = first
        for body in bodies:
            if time.perf_counter() >= deadline:
                break
            started = time.perf_counter()
            response = client.post("/api/v1/ingest/batch", content=body)
            last = time.perf_counter()
            if response.status_code != 200:
                raise SystemExit(f"client {index}: HTTP {response.status_code} {response.text}")
            latencies.append(last - started)
            spans += spans_per_batch
        else:
            raise SystemExit(f"client {index} ran out of payloads: raise the estimate")
    return {"latencies": latencies, "spans": spans, "first": first, "last": last}


def make_batch(spans: int) -> bytes:
    """A gzip batch as the SDK sends it: a run and ``spans`` spans under one agent span."""
    now = datetime.now(UTC)
    run_id = str(uuid.uuid4())
    root = str(uuid.uuid4())

    def moment(offset_ms: int) -> str:
        return (now + timedelta(milliseconds=offset_ms)).isoformat().replace("+00:00", "Z")

    events: list[dict[str, Any]] = [
        {
            "type": "run",
            "id": run_id,
            "agent": "bench-agent",
            "name": "bench-agent",
            "environment": "test",
            "status": "ok",
            "started_at": moment(0),
            "ended_at": moment(spans + 1),
            "span_count": spans,
        }
    ]
    for index in range(spans):
        events.append(
            {
                "type": "span",
                "id": root if index == 0 else str(uuid.uuid4()),
                "run_id": run_id,
                "parent_id": None if index == 0 else root,
                "kind": "agent" if index == 0 else ("llm" if index % 3 else "tool"),
                "name": "bench-agent" if index == 0 else f"call-{index % 7}",
                "status": "ok",
                "started_at": moment(index),
                "ended_at": moment(index + 1),
                "input": {"query": f"question {index}", "limit": 5},
                "output": [f"answer {index}", "second line"],
                "llm": {"model": "gpt-4o", "input_tokens": 120, "output_tokens": 40}
                if index % 3
                else None,
            }
        )
    body = {
        "schema_version": 1,
        "batch_id": str(uuid.uuid4()),
        "sdk": {"name": "bench", "version": "1"},
        "events": events,
    }
    return gzip.compress(json.dumps(body).encode(), compresslevel=5)


def count_spans(database_url: str) -> int:
    from sqlalchemy import func, select

    from agentops_server.db.engine import create_db_engine
    from agentops_server.db.models import Span

    engine = create_db_engine(database_url)
    with engine.connect() as connection:
        count = connection.scalar(select(func.count()).select_from(Span))
    engine.dispose()
    return int(count or 0)


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://root@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


@contextmanager
def hub_process(env: dict[str, str], port: int, workers: int) -> Iterator[None]:
    process = subprocess.Popen(
        [*HUB, "serve", "--port", str(port), "--workers", str(workers), "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the hub at {url} did not become ready in {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
