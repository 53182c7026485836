"""Emergency controls: what obeying them costs a call, and how fast a kill reaches agents.

    pip install -e ".[server,bench]"
    python benchmarks/controls.py overhead [--calls 20000] [--rounds 7] [--controls 50]
    python benchmarks/controls.py propagation [--clients 100] [--processes 4] [--kills 5]

- overhead: a decorated ``@tool`` inside a run, each call timed on its own, in interleaved
  rounds in one process (the method of benchmarks/sdk_overhead.py, whose helpers it uses):
  the bare function; the SDK with an empty chain (no stage, no guard: the enforcer is never
  consulted); the enforcer with one stage that does nothing (the spine's own cost per call);
  and the controls stage holding ``--controls`` controls over every kind of scope, none of
  which applies to the call (other agents, teams, tags, runs and environments; lifted and
  expired ones), as a real agent holds them: restored from the saved copy at ``init()``. The
  figure that matters is the controls stage against the empty chain (target: at most 1 us).
- propagation: the hub side. ``agentops-hub serve`` with 2 worker processes on PostgreSQL and
  Redis, an org bootstrapped, ``--clients`` SDK clients (each a real ``Client`` with its own
  stream connection, spread over ``--processes`` processes); then, ``--kills`` times, a kill of
  the whole org is set with ``agentops-hub controls kill`` (the CLI the hub's issue 10 defines,
  straight on the database, as in an emergency) and lifted again. For each client, the time
  from the kill being set to its guard refusing a call; after a client sees it, 1,000 calls
  are attempted and every one must be refused. Target: p50 <= 300 ms, p99 <= 1 s.
  NEEDS THE HUB SIDE OF ISSUE 10 (its stream, its control version propagation and the
  ``controls`` CLI): written against the endpoints and the CLI that issue specifies, it runs
  once that lands; until then it stops, saying which endpoint is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import httpx

import agentops_sdk as agentops
from agentops_sdk.client import CallSpec, Client
from agentops_sdk.config import Options
from agentops_sdk.contract.controls import (
    AgentProfile,
    Control,
    ControlScope,
    ControlSet,
    ControlState,
    ScopeKind,
)
from agentops_sdk.contract.decisions import StageName
from agentops_sdk.enforcement import HubLink, Stage
from agentops_sdk.enforcement.saved import SavedControls

ROOT = Path(__file__).resolve().parents[1]
AGENT = "researcher"
HUB_URL = "http://127.0.0.1:9"
"""Where the overhead benchmark's clients look for a hub: nothing answers (their link keeps
trying in the background, as an agent's does while its hub is away)."""


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


# -- overhead ------------------------------------------------------------------------------------


def fifty_controls(count: int) -> ControlSet:
    """``count`` controls over every kind of scope, none applying to ``AGENT`` in ``dev`` with
    the tool's tags, in a run of its own; the registry knows ``AGENT`` (team, tags) and more."""
    now = datetime.now(UTC)
    shapes: list[tuple[ControlState, ScopeKind, str | None, datetime | None]] = [
        ("killed", "agent", "writer", None),
        ("paused", "agent", "planner", now + timedelta(hours=1)),
        ("killed", "team", "billing", None),
        ("paused", "team", "growth", None),
        ("killed", "tag", "payments", None),
        ("paused", "tag", "batch", now + timedelta(hours=2)),
        ("killed", "run", str(uuid.uuid4()), None),
        ("paused", "environment", "prod", None),
        ("active", "org", None, None),  # a kill of the whole org, lifted
        ("killed", "org", None, now - timedelta(minutes=5)),  # a pause that expired
    ]
    controls = []
    for index in range(count):
        state, kind, value, expires_at = shapes[index % len(shapes)]
        if kind in ("agent", "tag") and index >= len(shapes):
            value = f"{value}-{index}"
        controls.append(
            Control(
                id=uuid.uuid4(),
                scope=ControlScope(kind=kind, value=value),
                state=state,
                reason="benchmark",
                actor="ops@example.com",
                version=1,
                created_at=now,
                updated_at=now - timedelta(seconds=index),
                expires_at=expires_at,
                pause_timeout=0.0,
            )
        )
    agents = [AgentProfile(name=AGENT, team="research", tags=("search", "eu"))]
    agents += [AgentProfile(name=f"agent-{n}", team="growth", tags=("batch",)) for n in range(20)]
    return ControlSet(
        org_id=uuid.uuid4(),
        version=1,
        controls=tuple(controls),
        agents=tuple(agents),
        generated_at=now,
    )


class DoNothing(Stage):
    """A controls stage that lets every call through: the spine's own cost per call."""

    name: ClassVar[StageName] = "controls"


def overhead_variants(helpers: ModuleType, count: int, folder: Path) -> list[Any]:
    """The variants timed against the bare function (see the module's docstring)."""
    options: dict[str, Any] = {"capture": False, "otel": False, "spool": False, "integrations": []}
    options["agent"] = AGENT
    tool = agentops.tool(tags=["search"])(helpers.search)
    api_key = "ak_benchmark"
    SavedControls(folder, HUB_URL, api_key).save(fifty_controls(count))

    def variant(
        stage: Stage | None = None, **more: Any
    ) -> Callable[[], AbstractContextManager[Any]]:
        @contextmanager
        def setup() -> Iterator[None]:
            client = agentops.init(exporter=helpers.DiscardExporter(), **(options | more))
            assert client is not None
            if stage is not None:
                client.enforcer.install(stage)
            with agentops.run(AGENT):
                yield
            agentops.shutdown()

        return setup

    controlled = variant(hub_url=HUB_URL, api_key=api_key, spool_dir=folder, max_staleness=86_400.0)
    return [
        ("empty chain", tool, variant()),
        ("enforcer, one do-nothing stage", tool, variant(DoNothing())),
        (f"controls stage, {count} controls", tool, controlled),
    ]


def overhead(arguments: argparse.Namespace) -> None:
    logging.getLogger("agentops_sdk").setLevel(logging.ERROR)  # the hub here never answers
    helpers = _benchmark("sdk_overhead")
    with tempfile.TemporaryDirectory() as folder:
        variants = overhead_variants(helpers, arguments.controls, Path(folder))
        medians = helpers.measure(
            ("bare function", helpers.search), variants, arguments.calls, arguments.rounds
        )
    bare = medians.pop("bare function")
    empty = medians["empty chain"]
    print(f"median per-call time of the bare function: {bare:.0f} ns")
    print(f"{'variant':<40}{'overhead ns':>12}{'vs empty chain':>16}")
    for name, median in medians.items():
        print(f"{name:<40}{median - bare:>12.0f}{median - empty:>16.0f}")


# -- propagation ---------------------------------------------------------------------------------


def propagation(arguments: argparse.Namespace) -> None:
    ingest = _benchmark("ingest")
    redis_url = arguments.redis_url
    with ingest.fresh_database("postgresql") as database_url:
        env = {**os.environ, "AGENTOPS_DATABASE_URL": database_url, "AGENTOPS_REDIS_URL": redis_url}
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
        with ingest.hub_process(env, port, 2):
            url = f"http://127.0.0.1:{port}"
            ingest.wait_until_up(url)
            for path in ("/api/v1/controls",):
                status = httpx.get(url + path, headers={"Authorization": f"Bearer {api_key}"})
                if status.status_code != 200:
                    raise SystemExit(
                        f"the hub does not serve {path} yet (HTTP {status.status_code})"
                    )

            def control(command: str) -> float:
                started = time.time()
                subprocess.run(
                    [*ingest.HUB, "controls", command, "--org", "bench", "--reason", "benchmark"],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                return started

            latencies, started_after = _clients(url, api_key, arguments, control)
    latencies.sort()
    print(
        f"{arguments.clients} clients in {arguments.processes} processes, {arguments.kills} kills"
    )
    print(f"kill set -> guard refuses: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms")  # fmt: skip
    print(f"calls started after a client saw the kill: {started_after} (must be 0)")


def _clients(
    url: str, api_key: str, arguments: argparse.Namespace, control: Callable[[str], float]
) -> tuple[list[float], int]:
    """Start the client processes, set and lift kills, gather what each client saw."""
    context = multiprocessing.get_context("spawn")
    per_process = -(-arguments.clients // arguments.processes)
    commands = [context.Queue() for _ in range(arguments.processes)]
    results: Any = context.Queue()
    processes = [
        context.Process(
            target=client_process, args=(url, api_key, per_process, commands[n], results)
        )
        for n in range(arguments.processes)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        results.get(timeout=120)  # "ready": every client of that process holds the stream
    latencies: list[float] = []
    started_after = 0
    try:
        for _ in range(arguments.kills):
            for queue in commands:
                queue.put("watch")
            for _ in processes:
                results.get(timeout=30)  # "watching"
            set_at = control("kill")
            for _ in processes:
                seen, leaked = results.get(timeout=120)
                latencies.extend(moment - set_at for moment in seen)
                started_after += leaked
            control("resume")
    finally:
        for queue in commands:
            queue.put("stop")
        for process in processes:
            process.join(30)
    return latencies, started_after


def client_process(url: str, api_key: str, clients: int, commands: Any, results: Any) -> None:
    """``clients`` SDK clients in one process, each with its own link thread and connection."""
    logging.getLogger("agentops_sdk").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        made = [
            Client(Options(hub_url=url, api_key=api_key, exporter="none", spool_dir=Path(folder)))
            for _ in range(clients)
        ]
        for client in made:
            _wait_until(client.enforcer.link, lambda controls: controls is not None)
        results.put("ready")
        while commands.get() == "watch":
            for client in made:  # the last kill was lifted: each client knows it first
                _wait_until(client.enforcer.link, lambda controls: not _kills(controls))
            outcomes = [_watch_for_a_kill(client) for client in made]
            results.put("watching")
            seen = [outcome.result(120) for outcome in outcomes]
            results.put(([moment for moment, _ in seen], sum(leaked for _, leaked in seen)))
        for client in made:
            client.shutdown(1.0)


def _kills(controls: ControlSet | None) -> bool:
    return controls is not None and any(c.state == "killed" for c in controls.controls)


def _wait_until(link: HubLink, holds: Callable[[ControlSet | None], bool]) -> None:
    if not link.wait_until(lambda: holds(link.snapshot.get("controls")), 60):
        raise SystemExit("a client did not hear the hub's controls within 60 s")


def _watch_for_a_kill(client: Client) -> Future[tuple[float, int]]:
    """On a thread: wait for ``client``'s link to bring a kill (the snapshot is published and
    waiters notified at once), note when, then try 1,000 calls through its guard; the future
    gets the moment and how many of the calls were let through (must be 0)."""
    probe = CallSpec(kind="tool", name="probe")
    link = client.enforcer.link
    outcome: Future[tuple[float, int]] = Future()

    def watch() -> None:
        link.wait_until(lambda: _kills(link.snapshot.get("controls")), 120)
        moment = time.time()
        allowed = 0
        for _ in range(1_000):
            try:
                span = client.start(probe)
            except agentops.AgentKilled:
                continue
            allowed += 1
            if span is not None:
                client.end_span(span, probe)
        outcome.set_result((moment, allowed))

    threading.Thread(target=watch, daemon=True).start()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cost = commands.add_parser("overhead", help="guard-chain cost per call, in one process")
    cost.add_argument("--calls", type=int, default=20_000, help="calls per variant per round")
    cost.add_argument("--rounds", type=int, default=7)
    cost.add_argument("--controls", type=int, default=50)
    reach = commands.add_parser("propagation", help="kill to refusal, 100 clients, 2 hubs")
    reach.add_argument("--clients", type=int, default=100)
    reach.add_argument("--processes", type=int, default=4)
    reach.add_argument("--kills", type=int, default=5)
    reach.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    arguments = parser.parse_args()
    {"overhead": overhead, "propagation": propagation}[arguments.command](arguments)


if __name__ == "__main__":
    main()
