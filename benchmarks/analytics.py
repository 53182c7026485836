"""How fast the analytics APIs answer over 30 days of one busy org, on PostgreSQL.

    pip install -e ".[server,bench]"
    python benchmarks/analytics.py [--runs 100000] [--spans-per-run 10] [--requests 30]
    python benchmarks/analytics.py --full      # 1,000,000 runs, 10,000,000 spans

A fresh PostgreSQL database on 127.0.0.1:5432, migrated, with an org made by ``agentops-hub
bootstrap``. The generator is SQL, not the API: ``--runs`` runs of 50 agents over the last 30
days (one in 20 failed, about one in 100 blocked; durations up to a minute), each with
``--spans-per-run`` spans (LLM calls on five priced models, tool calls, steps; one call in 50
blocked), inserted in chunks of 50,000 runs. Then every hour is rolled up as derived work would
(:func:`~agentops_server.services.analytics.rollups.roll_up_range`, timed), ``agentops-hub
serve`` starts as its own process, and each endpoint is called ``--requests`` times (after 3
warm-up calls) with the org's API key over the 30 days: the summary, a daily series by agent,
an hourly series of the org, the cost breakdown by model per day and by agent per month, and
the month's report. Printed: p50 and p95 of each, in ms, against the 150 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx

HUB = [sys.executable, "-m", "agentops_server.cli"]
PG_ADMIN = "postgresql://root@127.0.0.1:5432/test"
TARGET_MS = 150.0
_CHUNK = 50_000
_AGENTS = 50

RUNS_SQL = """
INSERT INTO runs (
    org_id, id, agent, name, environment, status, started_at, ended_at, tags, metadata,
    span_count, error_count, input_tokens, output_tokens, cached_input_tokens,
    cache_write_tokens, reasoning_tokens, llm_calls, unpriced_calls, received_at
)
SELECT
    %(org)s, gen_random_uuid(), 'agent-' || (n %% %(agents)s::int), 'run',
    (ARRAY['prod', 'staging', 'test', 'dev'])[1 + n %% 4],
    CASE WHEN n %% 20 = 0 THEN 'error' WHEN n %% 97 = 0 THEN 'blocked' ELSE 'ok' END,
    started, started + random() * interval '60 seconds', '[]', '{}',
    -1, 0, 0, 0, 0, 0, 0, 0, 0, now()
FROM (
    SELECT n, %(end)s - random() * interval '30 days' AS started
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
) AS generated
"""

SPANS_SQL = """
INSERT INTO spans (
    org_id, id, run_id, kind, name, status, started_at, ended_at, tags, attributes, events,
    model, provider, input_tokens, output_tokens, cost, cost_match
)
SELECT
    runs.org_id, gen_random_uuid(), runs.id,
    (ARRAY['llm', 'tool', 'step'])[1 + k %% 3], 'span',
    CASE WHEN k %% 50 = 0 THEN 'blocked' ELSE 'ok' END,
    runs.started_at, runs.started_at + interval '1 second', '[]', '{}', '[]',
    CASE WHEN k %% 3 = 0 THEN (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet', 'claude-haiku',
        'llama'])[1 + (k / 3) %% 5] END,
    CASE WHEN k %% 3 = 0 THEN 'bench' END,
    CASE WHEN k %% 3 = 0 THEN 1000 + k END,
    CASE WHEN k %% 3 = 0 THEN 200 END,
    CASE WHEN k %% 3 = 0 THEN 0.0025 + k * 0.0001 END,
    CASE WHEN k %% 3 = 0 THEN 'exact' END
FROM runs CROSS JOIN generate_series(0, %(spans)s::int - 1) AS k
WHERE runs.org_id = %(org)s AND runs.span_count = -1
"""
MARK_SQL = "UPDATE runs SET span_count = %(spans)s WHERE org_id = %(org)s AND span_count = -1"
"""The chunk's runs have their spans: ``-1`` marks the runs of the chunk being made."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--spans-per-run", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30, help="timed calls per endpoint")
    parser.add_argument("--full", action="store_true", help="1,000,000 runs (the issue's size)")
    arguments = parser.parse_args()
    runs = 1_000_000 if arguments.full else arguments.runs
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

    with fresh_database() as url:
        subprocess.run([*HUB, "db", "upgrade", "--database-url", url], check=True)
        made = subprocess.run(
            [*HUB, "bootstrap", "--database-url", url, "--org", "bench", "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        org = json.loads(made.stdout)
        org_id, key = uuid.UUID(org["org_id"]), org["api_key"]

        started = time.perf_counter()
        generate(url, org_id, runs, arguments.spans_per_run, end)
        print(
            f"generated {runs:,} runs, {runs * arguments.spans_per_run:,} spans "
            f"in {time.perf_counter() - started:.0f} s"
        )
        started = time.perf_counter()
        hours = asyncio.run(roll_up(url, org_id, end - timedelta(days=31), end))
        print(f"rolled up {hours} hours in {time.perf_counter() - started:.0f} s")

        port = free_port()
        env = {**os.environ, "AGENTOPS_DATABASE_URL": url}
        with hub_process(env, port):
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base)
            time_endpoints(base, key, end, arguments.requests)


def generate(url: str, org_id: uuid.UUID, runs: int, spans: int, end: datetime) -> None:
    """The runs, their spans and the agents, in SQL, a chunk at a time."""
    import psycopg

    from agentops_server.db.partitions import create_partition_sql

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        for back in range(32):  # the days' span partitions, as upkeep would have made them
            connection.execute(create_partition_sql((end - timedelta(days=back)).date()))
        for first in range(0, runs, _CHUNK):
            last = min(first + _CHUNK, runs) - 1
            params = {
                "org": org_id,
                "first": first,
                "last": last,
                "end": end,
                "spans": spans,
                "agents": _AGENTS,
            }
            connection.execute(RUNS_SQL, params)
            connection.execute(SPANS_SQL, params)
            connection.execute(MARK_SQL, params)
            print(f"  {last + 1:,} runs", flush=True)
        connection.execute(
            "INSERT INTO agents (org_id, id, name) SELECT %(org)s, gen_random_uuid(), "
            "'agent-' || n FROM generate_series(0, %(agents)s::int - 1) AS n",
            {"org": org_id, "agents": _AGENTS},
        )
        connection.execute("ANALYZE")


async def roll_up(url: str, org_id: uuid.UUID, start: datetime, end: datetime) -> int:
    from agentops_server.db.engine import create_async_db_engine
    from agentops_server.services.analytics.rollups import roll_up_range

    engine = create_async_db_engine(url, tenant_isolation=True)
    try:
        return await roll_up_range(engine, org_id, start, end)
    finally:
        await engine.dispose()


def time_endpoints(base: str, key: str, end: datetime, requests: int) -> None:
    since = (end - timedelta(days=30)).isoformat()
    until = end.isoformat()
    month = {"from": since, "to": until}
    endpoints = {
        "summary, 30 days": ("/api/v1/analytics/summary", month),
        "daily series by agent": (
            "/api/v1/analytics/timeseries",
            {**month, "dimension": "agent", "granularity": "day"},
        ),
        "hourly series of the org": (
            "/api/v1/analytics/timeseries",
            {**month, "granularity": "hour"},
        ),
        "costs by model, daily": ("/api/v1/analytics/costs", {**month, "group_by": "model"}),
        "costs by agent, monthly": (
            "/api/v1/analytics/costs",
            {**month, "group_by": "agent", "granularity": "month"},
        ),
        "report of the month": ("/api/v1/reports/summary", {"period": "month"}),
    }
    print(f"{'endpoint':<28}{'p50 ms':>9}{'p95 ms':>9}  target {TARGET_MS:.0f} ms")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        for name, (path, params) in endpoints.items():
            timings = []
            for attempt in range(requests + 3):
                started = time.perf_counter()
                response = client.get(path, params=params, timeout=60)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if attempt >= 3:
                    timings.append(elapsed)
            p50 = statistics.median(timings)
            p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) > 1 else timings[0]
            verdict = "ok" if p95 <= TARGET_MS else "over"
            print(f"{name:<28}{p50:>9.1f}{p95:>9.1f}  {verdict}")


@contextmanager
def fresh_database() -> Iterator[str]:
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
def hub_process(env: dict[str, str], port: int) -> Iterator[None]:
    process = subprocess.Popen(
        [*HUB, "serve", "--port", str(port), "--no-migrate"],
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
