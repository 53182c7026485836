"""Hub processes (and workers of their derived work) for the end-to-end tests, and the policies
and runs API an operator uses on them."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.server.servers import HUB, HubOutput, HubProcess, hub_process, wait_until

VISIBLE = 5.0
"""How soon a decision must be readable through the hub's API, and a policy change must reach
the agent (the issue's figure)."""
VERSIONS = "/api/v1/policies/versions"


@dataclasses.dataclass(frozen=True)
class SharedHub:
    """A hub process the module's tests share, its database, and what it logs."""

    url: str
    database_url: str
    log: HubOutput


@contextmanager
def hub(database_url: str, port: int = 0, **settings: str) -> Iterator[HubProcess]:
    """A hub process on ``database_url`` with ``AGENTOPS_<SETTING>`` variables; its upkeep is
    off unless ``upkeep`` says otherwise: the tests' events are dated 2026-11-01 (see
    ``tests/server/ingest_events.py``), past the default retention, and a scheduled upkeep
    firing while a test runs would purge them from under it."""
    environment = {"AGENTOPS_UPKEEP": "false"} | {
        f"AGENTOPS_{name.upper()}": value for name, value in settings.items()
    }
    with hub_process(
        "--database-url", database_url, "--no-migrate", environment=environment, port=port
    ) as process:
        yield process


class Policies:
    """The hub's policies and runs API, as an operator with the org's admin key uses it."""

    def __init__(self, hub_url: str, api_key: str) -> None:
        self.http = httpx.Client(
            base_url=hub_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )

    def activate(self, *rules: dict[str, Any]) -> int:
        """Save a version holding ``rules`` and make it the active set; its number."""
        body = {"document": {"rules": list(rules)}, "activate": True}
        response = self.http.post(VERSIONS, json=body)
        assert response.status_code == 201, response.text
        number: int = response.json()["number"]
        return number

    def rollback(self, number: int) -> int:
        """Activate the document of version ``number`` again (as a new version); its number."""
        (version,) = [item for item in self.versions() if item["number"] == number]
        response = self.http.post(f"{VERSIONS}/{version['id']}/rollback", json={})
        assert response.status_code in (200, 201), response.text
        rolled: int = response.json()["number"]
        return rolled

    def versions(self) -> list[dict[str, Any]]:
        response = self.http.get(VERSIONS)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def decisions(self, run_id: str, span: str) -> list[dict[str, Any]]:
        """The decision events the hub stores on the span named ``span`` of the run (none
        while the run has not arrived)."""
        return self.events(run_id, span, "agentops.decision")

    def events(self, run_id: str, span: str, name: str) -> list[dict[str, Any]]:
        """The attributes of the events called ``name`` the hub stores on the span named
        ``span`` of the run (none while the run has not arrived)."""
        response = self.http.get(f"/api/v1/runs/{run_id}")
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        return [
            event["attributes"]
            for node in _walk(response.json()["spans"])
            if node["name"] == span
            for event in node["events"]
            if event["name"] == name
        ]

    def decision_within(self, run_id: str, span: str, since: float) -> dict[str, Any]:
        """The one decision on that span, once the hub has it; fails unless it is readable
        ``VISIBLE`` seconds after ``since`` (``time.monotonic()``)."""
        found = wait_until(lambda: self.decisions(run_id, span), since + VISIBLE - time.monotonic())
        assert found, f"no decision on {span} through the runs API within {VISIBLE} s"
        (decision,) = found
        return decision


def _walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from _walk(node["children"])


@contextmanager
def worker(database_url: str, redis_url: str, queue_name: str, log: Path) -> Iterator[None]:
    """An ``agentops-hub worker`` running the derived work of the queue ``queue_name`` (the
    hub's tasks only), its output in ``log``; stopped with SIGTERM afterwards."""
    command = [
        str(HUB),
        "worker",
        "--database-url",
        database_url,
        "--redis-url",
        redis_url,
        "--queue",
        queue_name,
        "--sweep-interval",
        "1",
        "--shutdown-grace",
        "1",
    ]
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AGENTOPS_")}
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=clean, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
