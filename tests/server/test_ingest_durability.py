"""Acknowledged means committed: ``agentops-hub serve`` killed with SIGKILL right after it
answered keeps every event it acknowledged, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal

import httpx

from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import bearer
from tests.server.ingest_events import INGEST, batch, rows, run_event, span_event, started
from tests.server.servers import hub_process


def test_an_acknowledged_batch_survives_the_hub_being_killed_at_once(
    org: IssuedKey, migrated_url: str
) -> None:
    # Events of now: the hub's upkeep at start (on, as by default) purges what is past the org's
    # retention, and a purged span sent again is rightly stored again.
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    times = {
        "started_at": start.isoformat(),
        "ended_at": (start + dt.timedelta(seconds=2)).isoformat(),
    }
    run = run_event(**times)
    payload = batch(started(run), *[span_event(run, **times) for _ in range(200)], run)
    body = gzip.compress(json.dumps(payload).encode())
    headers = bearer(org.key) | {"Content-Encoding": "gzip"}
    with hub_process("--database-url", migrated_url) as hub:
        response = httpx.post(f"{hub.url}{INGEST}", content=body, headers=headers, timeout=30)
        assert response.status_code == 200
        os.kill(hub.process.pid, signal.SIGKILL)
        assert hub.process.wait(10) == -signal.SIGKILL

    with hub_process("--database-url", migrated_url) as restarted:
        assert len(rows(migrated_url, "spans", org.org_id)) == 200
        (stored,) = rows(migrated_url, "runs", org.org_id)
        assert stored["status"] == "ok"
        again = httpx.post(f"{restarted.url}{INGEST}", content=body, headers=headers, timeout=30)
        assert again.json()["duplicates"] == len(payload["events"])
