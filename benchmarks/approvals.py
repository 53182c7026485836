"""Human approvals: from a reviewer's decision through the API to the tool resuming in a real
SDK process.

    pip install -e ".[server,bench]"
    python benchmarks/approvals.py [--approvals 100] [--databases postgresql,sqlite]
                                   [--redis-url redis://127.0.0.1:6379/13]

For each database: a fresh one (a PostgreSQL database on 127.0.0.1:5432, the hub on Redis; or a
SQLite file, the hub on its embedded backends), one ``agentops-hub serve`` process, an org
bootstrapped with the CLI, a policy set activated through the API whose rule requires approval
of ``send_email`` to addresses outside example.com, and one agent process: the end-to-end
tests' ``python -m tests.e2e.agent_approvals`` (run from the repository's root), the SDK with
the hub's URL and the org's key, streaming from the hub.

Then ``--approvals`` times in sequence: the agent calls ``send_email`` (each call in a run of its
own, so each is a new request) and blocks; the benchmark reads the queue until the request is
pending, notes ``time.time()`` just before its decision ``POST`` and approves it with the org's
admin key; the tool's body notes ``time.time()`` as it starts (one machine, one clock).
Decision to resume is the difference: the hub deciding and committing, the decision pushed on
the org's stream (through Redis with PostgreSQL), the SDK waking, claiming the approval (one
more request to the hub) and the call going ahead. The decision ``POST``'s own round trip is
shown next to it. Every call must have run once: ``bodies run`` counts the tool's runs. Target:
decision to resume p95 <= 1 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
APPROVALS = "/api/v1/approvals"
RULE = {
    "id": "external-mail",
    "match": {"kind": "tool", "name": "send_email"},
    "when": {"argument": "to", "not_regex": r"@example\.com$"},
    "outcome": "require_approval",
    "message": "Mail outside the company needs a person's approval.",
}
DEADLINE = 60.0
"""How long one approval's steps may take at most before the benchmark gives up."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    arguments = parser.parse_args()

    ingest = _benchmark("ingest")
    print(f"{arguments.approvals} approvals in sequence, 1 hub process, 1 agent process")
    print(f"{'hub':<22}{'':<20}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'bodies run':>12}")  # fmt: skip
    for database in arguments.databases.split(","):
        with ingest.fresh_database(database) as database_url:
            resumed, posted, ran = measure(ingest, database, database_url, arguments)
        report(BACKENDS[database], "decision to resume", resumed, ran)
        report("", "decision POST", posted, ran)


def measure(
    ingest: ModuleType, database: str, database_url: str, arguments: argparse.Namespace
) -> tuple[list[float], list[float], int]:
    """Decision-to-resume and decision-request times (seconds), and how often the tool ran."""
    env = {name: v for name, v in os.environ.items() if not name.startswith("AGENTOPS_")}
    env |= {
        "AGENTOPS_DATABASE_URL": database_url,
        "AGENTOPS_SECRET_KEY": uuid.uuid4().hex,
        # The benchmark reads the queue in a tight loop: it times the hub, not the limits.
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
    with (
        ingest.hub_process(env, port, 1),
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as hub,
        tempfile.TemporaryDirectory() as folder,
    ):
        ingest.wait_until_up(url)
        activated = hub.post(
            "/api/v1/policies/versions", json={"document": {"rules": [RULE]}, "activate": True}
        )
        activated.raise_for_status()
        markers = Path(folder) / "sent.jsonl"
        resumed: list[float] = []
        posted: list[float] = []
        with agent_process(url, api_key, Path(folder), markers) as agent:
            for index in range(arguments.approvals):
                agent.send({"send": {"to": f"customer-{index}@other.org", "body": "hi"}})
                request_id = pending(hub)
                decided = time.time()
                response = hub.post(
                    f"{APPROVALS}/{request_id}/decision", json={"decision": "approve"}
                )
                posted.append(time.time() - decided)
                response.raise_for_status()
                answer = agent.answer()
                if answer["outcome"] != "ok":
                    raise SystemExit(f"an approved call did not run: {answer}")
                resumed.append(answer["started"] - decided)
        ran = len(markers.read_text().splitlines())
    return resumed, posted, ran


def pending(hub: httpx.Client) -> str:
    """The id of the one pending request, once there is one."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        response = hub.get(APPROVALS, params={"state": "pending"})
        response.raise_for_status()
        items = response.json()["items"]
        if items:
            (request,) = items
            request_id: str = request["id"]
            return request_id
        time.sleep(0.01)
    raise SystemExit(f"no pending request within {DEADLINE:.0f} s")


class Agent:
    """The agent process: one JSON command in, one JSON line out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=DEADLINE)
        except queue.Empty:
            raise SystemExit(f"the agent did not answer within {DEADLINE:.0f} s") from None
        if not line:
            raise SystemExit("the agent exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")


@contextmanager
def agent_process(hub_url: str, api_key: str, folder: Path, markers: Path) -> Iterator[Agent]:
    """``tests.e2e.agent_approvals`` on the hub, once it is ready (holding the policy)."""
    environment = {name: v for name, v in os.environ.items() if not name.startswith("AGENTOPS_")}
    environment |= {
        "AGENTOPS_HUB_URL": hub_url,
        "AGENTOPS_API_KEY": api_key,
        "AGENTOPS_SPOOL_DIR": str(folder / "spool"),
        "AGENTOPS_ENVIRONMENT": "test",
        "E2E_MARKERS": str(markers),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.agent_approvals"],
        cwd=ROOT,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline() or "{}")
        if ready.get("policy") is None:
            raise SystemExit(f"the agent did not start holding the policy: {ready}")
        yield Agent(process)
        assert process.stdin is not None
        process.stdin.close()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def report(hub: str, name: str, latencies: list[float], ran: int) -> None:
    """One line of figures: latency percentiles (nearest rank) in ms, and bodies run."""
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    figures = "".join(f"{rank(q):>8.1f}" for q in (0.5, 0.95, 0.99, 1.0))
    print(f"{hub:<22}{name:<20}{figures}{ran:>12}")


if __name__ == "__main__":
    main()
