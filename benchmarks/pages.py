"""How fast the hub renders its pages over 30 days of one busy org, on PostgreSQL.

    pip install -e ".[server,bench]"
    python benchmarks/pages.py [--runs 20000] [--spans-per-run 10] [--requests 30]
    python benchmarks/pages.py --runs 1000000      # the issue's size

A fresh PostgreSQL database on 127.0.0.1:5432, migrated; ``agentops-hub serve`` starts as its
own process and an owner signs up through the sign-up page (a session cookie, as a browser
holds). Their org is filled by benchmarks/analytics.py's SQL generator (``--runs`` runs of 50
agents over the last 30 days, ``--spans-per-run`` spans each) and rolled up as derived work
would. Then each page is fetched ``--requests`` times (after 3 warm-up fetches): the dashboard
over 24 hours, 7 and 30 days, the costs page by agent and by model, the month's report, and the
run explorer (``/runs``) when the hub has it. Printed: p50 and p95 of each, in ms, against the
100 ms target (the whole answer, on this machine's loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import re
import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import httpx

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 100.0
PASSWORD = "a long bench password"
CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')
PAGES = {
    "dashboard, 24 hours": "/dashboard?range=24h",
    "dashboard, 7 days": "/dashboard?range=7d",
    "dashboard, 30 days": "/dashboard?range=30d",
    "costs by agent, daily": "/costs?range=30d&group_by=agent&granularity=day",
    "costs by model, monthly": "/costs?range=30d&group_by=model&granularity=month",
    "report of the month": "/reports?period=month",
    "runs": "/runs",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--spans-per-run", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30, help="timed fetches per page")
    arguments = parser.parse_args()
    analytics = _benchmark("analytics")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

    with analytics.fresh_database() as url:
        subprocess.run([*analytics.HUB, "db", "upgrade", "--database-url", url], check=True)
        port = analytics.free_port()
        env = {**os.environ, "AGENTOPS_DATABASE_URL": url}
        with analytics.hub_process(env, port):
            base = f"http://127.0.0.1:{port}"
            analytics.wait_until_up(base)
            with httpx.Client(base_url=base, timeout=60, follow_redirects=True) as browser:
                org_id = sign_up(browser)
                started = time.perf_counter()
                analytics.generate(url, org_id, arguments.runs, arguments.spans_per_run, end)
                print(
                    f"generated {arguments.runs:,} runs, "
                    f"{arguments.runs * arguments.spans_per_run:,} spans "
                    f"in {time.perf_counter() - started:.0f} s"
                )
                started = time.perf_counter()
                hours = asyncio.run(analytics.roll_up(url, org_id, end - timedelta(days=31), end))
                print(f"rolled up {hours} hours in {time.perf_counter() - started:.0f} s")
                time_pages(browser, arguments.requests)


def sign_up(browser: httpx.Client) -> uuid.UUID:
    """Sign up through the page, as a person would: ``browser`` keeps the session cookie."""
    form = browser.get("/sign-up")
    token = CSRF_INPUT.search(form.text)
    assert token, "the sign-up page has a CSRF token"
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    fields = {
        "_csrf_token": token[1],
        "org_name": "Bench",
        "name": "Bench Owner",
        "email": email,
        "password": PASSWORD,
    }
    answer = browser.post("/sign-up", data=fields)
    answer.raise_for_status()
    login = httpx.post(
        f"{browser.base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    login.raise_for_status()
    return uuid.UUID(login.json()["org_id"])


def time_pages(browser: httpx.Client, requests: int) -> None:
    """Fetch each page ``requests`` times and print p50 and p95 (ms)."""
    print(f"{'page':<28}{'p50 ms':>9}{'p95 ms':>9}  target {TARGET_MS:.0f} ms")
    for name, path in PAGES.items():
        if browser.get(path).status_code == 404:
            print(f"{name:<28}{'':>9}{'':>9}  not on this hub")
            continue
        timings = []
        for attempt in range(requests + 3):
            started = time.perf_counter()
            answer = browser.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            answer.raise_for_status()
            if attempt >= 3:
                timings.append(elapsed)
        p50 = statistics.median(timings)
        p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) > 1 else timings[0]
        verdict = "ok" if p95 <= TARGET_MS else "over"
        print(f"{name:<28}{p50:>9.1f}{p95:>9.1f}  {verdict}")


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


if __name__ == "__main__":
    main()
