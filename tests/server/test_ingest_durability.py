"""Acknowledged means committed: ``agentops-hub serve`` killed with SIGKILL right after it
answered keeps every event it acknowledged, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agentops_server.services.orgs import IssuedKey
from tests.sdk.fake_hub import free_port
from tests.server.ingest_events import INGEST, batch, rows, run_event, span_event, started

HUB = str(Path(sys.executable).with_name("agentops-hub"))
"""The installed console script."""
STARTUP = 30.0
"""Seconds a hub process gets to answer /health."""


@dataclasses.dataclass(frozen=True)
class HubProcess:
    process: subprocess.Popen[bytes]
    url: str


@pytest.fixture
def start_hub(migrated_url: str, tmp_path: Path) -> Iterator[Callable[[], HubProcess]]:
    """``start_hub()``: ``agentops-hub serve`` on a free port, up and answering; killed after."""
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> HubProcess:
        port = free_port()
        log = tmp_path / f"hub-{len(processes)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [HUB, "serve", "--database-url", migrated_url, "--port", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        hub = HubProcess(process, f"http://127.0.0.1:{port}")
        wait_until_up(hub, log)
        return hub

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def wait_until_up(hub: HubProcess, log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if hub.process.poll() is not None:
            pytest.fail(f"the hub exited with {hub.process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{hub.url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the hub did not answer /health within {STARTUP} s:\n{log.read_text()}")


def test_an_acknowledged_batch_survives_the_hub_being_killed_at_once(
    start_hub: Callable[[], HubProcess], org: IssuedKey, migrated_url: str
) -> None:
    run = run_event()
    payload = batch(started(run), *[span_event(run) for _ in range(200)], run)
    body = gzip.compress(json.dumps(payload).encode())
    headers = {"Authorization": f"Bearer {org.key}", "Content-Encoding": "gzip"}
    hub = start_hub()

    response = httpx.post(f"{hub.url}{INGEST}", content=body, headers=headers, timeout=30)
    assert response.status_code == 200
    os.kill(hub.process.pid, signal.SIGKILL)
    assert hub.process.wait(10) == -signal.SIGKILL

    restarted = start_hub()
    assert len(rows(migrated_url, "spans", org.org_id)) == 200
    (stored,) = rows(migrated_url, "runs", org.org_id)
    assert stored["status"] == "ok"
    again = httpx.post(f"{restarted.url}{INGEST}", content=body, headers=headers, timeout=30)
    assert again.json()["duplicates"] == len(payload["events"])
