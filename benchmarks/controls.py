"""Emergency controls: what obeying them costs a call, and how fast a kill reaches agents.

    pip install -e ".[server,bench]"
    python benchmarks/controls.py overhead [--calls 20000] [--rounds 7] [--controls 50]
    python benchmarks/controls.py propagation [--clients 100] [--processes 4] [--kills 5]
                                              [--poll-interval 1] [--poll-clients 100]

- overhead: a decorated ``@tool`` inside a run, each call timed on its own, in interleaved
  rounds in one process (the method of benchmarks/sdk_overhead.py, whose helpers it uses):
  the bare function; the SDK with an empty chain (no stage, no guard: the enforcer is never
  consulted); the enforcer with one stage that does nothing (the spine's own cost per call);
  and the controls stage holding ``--controls`` controls over every kind of scope, none of
  which applies to the call (other agents, teams, tags, runs and environments; lifted and
  expired ones), as a real agent holds them: restored from the saved copy at ``init()``. The
  figure that matters is the controls stage against the empty chain (target: at most 1 us).
- propagation: a fresh PostgreSQL database, 2 ``agentops-hub serve`` processes on Redis, an org
  bootstrapped, ``--clients`` SDK clients (each a real ``Client`` with its own link thread and
  stream connection, spread over ``--processes`` processes, taking turns between the 2 hubs).
  Then ``--kills`` times per path, a kill of the whole org is set and lifted again: through
  ``POST /api/v1/controls`` (on each hub in turn; the other hears it over Redis), and with
  ``agentops-hub controls kill`` straight on the database (the hubs' version watch finds it).
  For each client, the time from the kill being set (the control's ``updated_at``, stamped by
  the process setting it just before its commit) to its guard refusing a call; after that,
  1,000 more calls are tried and no tool body may run. Then the same, set through the API, with
  a second fleet of ``--poll-clients`` whose stream is refused (polling every
  ``--poll-interval`` s). Target over the stream: p50 <= 300 ms, p99 <= 1 s; polling: bounded
  by the interval.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import multiprocessing
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, suppress
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
from agentops_sdk.enforcement.hub_stream import HubStream
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


PATHS = ("api", "cli")
"""How a kill is set: ``POST /api/v1/controls`` on one of the hubs (which pushes it at once, to
the other hub over Redis), or ``agentops-hub controls kill`` straight on the database (which the
hubs' version watch finds)."""


def propagation(arguments: argparse.Namespace) -> None:
    ingest = _benchmark("ingest")
    with ingest.fresh_database("postgresql") as database_url:
        env = {
            **os.environ,
            "AGENTOPS_DATABASE_URL": database_url,
            "AGENTOPS_REDIS_URL": arguments.redis_url,
            "AGENTOPS_SECRET_KEY": uuid.uuid4().hex,
            # 100 agents on one key polling every second are over the default limits (1,200
            # requests a minute per key, 6,000 per org): the benchmark times the hub, not them.
            "AGENTOPS_RATE_LIMIT_KEY": "1000000/minute",
            "AGENTOPS_RATE_LIMIT_ORG": "1000000/minute",
        }
        subprocess.run([*ingest.HUB, "db", "upgrade"], env=env, check=True, capture_output=True)
        bootstrap = subprocess.run(
            [*ingest.HUB, "bootstrap", "--org", "bench", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        api_key = json.loads(bootstrap.stdout.strip().splitlines()[-1])["api_key"]
        ports = [ingest.free_port(), ingest.free_port()]
        with ingest.hub_process(env, ports[0], 1), ingest.hub_process(env, ports[1], 1):
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url in urls:
                ingest.wait_until_up(url)
            hubs = Hubs(urls, api_key, [*ingest.HUB, "controls"], env)
            print(
                f"{arguments.clients} clients in {arguments.processes} processes, split over 2 "
                f"hub processes (PostgreSQL, Redis); {arguments.kills} kills per path"
            )
            print(f"{'path':<28}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}"
                  f"{'samples':>9}{'bodies run':>12}")  # fmt: skip
            with Fleet(urls, api_key, arguments, None) as fleet:
                for path in PATHS:
                    report(f"push, kill set by {path}", *fleet.kills(hubs, path, arguments.kills))
            if arguments.poll_interval:
                polling = argparse.Namespace(
                    **{**vars(arguments), "clients": arguments.poll_clients}
                )
                with Fleet(urls, api_key, polling, arguments.poll_interval) as fleet:
                    name = f"{polling.clients} polling every {arguments.poll_interval:g} s, by api"
                    report(name, *fleet.kills(hubs, "api", arguments.kills))
    print("bodies run: tool bodies that ran in the 1,000 calls each client tried after its")
    print("guard first refused (must be 0)")


def report(name: str, latencies: list[float], ran: int) -> None:
    """One line of figures: latency percentiles (nearest rank) in ms, and bodies run."""
    ordered = sorted(latencies)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000

    figures = "".join(f"{rank(q):>8.0f}" for q in (0.5, 0.95, 0.99, 1.0))
    print(f"{name:<28}{figures}{len(ordered):>9}{ran:>12}")


class Hubs:
    """Sets and lifts a kill of the whole org, through the API (taking turns between the hubs)
    or the CLI; says when it was set: the control's ``updated_at``, which the process setting it
    stamps just before its commit."""

    def __init__(self, urls: list[str], api_key: str, cli: list[str], env: dict[str, str]):
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.cli = cli
        self.env = env
        self.turn = 0

    def set(self, path: str, state: ControlState) -> float:
        """Set the org's state by ``path``; the moment it was set (epoch seconds)."""
        if path == "cli":
            verb = {"killed": "kill", "active": "resume"}[state]
            command = [*self.cli, verb, "--org", "bench", "--reason", "benchmark"]
            subprocess.run(command, env=self.env, check=True, capture_output=True)
            return self._org_control().updated_at.timestamp()
        self.turn += 1
        body = {"scope": {"kind": "org", "value": None}, "state": state, "reason": "benchmark"}
        url = self.urls[self.turn % len(self.urls)] + "/api/v1/controls"
        answer = httpx.post(url, json=body, headers=self.headers, timeout=30)
        answer.raise_for_status()
        return Control.model_validate_json(answer.content).updated_at.timestamp()

    def _org_control(self) -> Control:
        answer = httpx.get(self.urls[0] + "/api/v1/controls", headers=self.headers, timeout=30)
        answer.raise_for_status()
        controls = ControlSet.model_validate_json(answer.content).controls
        return next(c for c in controls if c.scope.kind == "org")


class Fleet:
    """``--clients`` SDK clients in ``--processes`` processes, each client on one of the hubs
    (in turn) with its own link thread and connection; on the stream, or polling every
    ``poll_interval`` seconds when given (their stream is refused)."""

    def __init__(
        self, urls: list[str], api_key: str, arguments: argparse.Namespace, poll: float | None
    ):
        context = multiprocessing.get_context("spawn")
        per_process = -(-arguments.clients // arguments.processes)
        self.commands = [context.Queue() for _ in range(arguments.processes)]
        self.results: Any = context.Queue()
        self.processes = [
            context.Process(
                target=client_process,
                args=(urls, api_key, poll, n * per_process, per_process, queue, self.results),
            )
            for n, queue in enumerate(self.commands)
        ]

    def __enter__(self) -> Fleet:
        for process in self.processes:
            process.start()
        for _ in self.processes:
            self.results.get(timeout=180)  # "ready": every client of that process holds controls
        return self

    def __exit__(self, *exc: object) -> None:
        for queue in self.commands:
            queue.put("stop")
        for process in self.processes:
            process.join(30)

    def kills(self, hubs: Hubs, path: str, kills: int) -> tuple[list[float], int]:
        """``kills`` times: kill by ``path``, gather each client's time to refuse, lift it."""
        latencies: list[float] = []
        ran = 0
        for _ in range(kills):
            for queue in self.commands:
                queue.put("watch")
            for _ in self.processes:
                self.results.get(timeout=60)  # "watching": every client sees no kill
            set_at = hubs.set(path, "killed")
            for _ in self.processes:
                refused_at, bodies = self.results.get(timeout=120)
                latencies.extend(moment - set_at for moment in refused_at)
                ran += bodies
            hubs.set(path, "active")
        return latencies, ran


def client_process(
    urls: list[str],
    api_key: str,
    poll: float | None,
    first: int,
    clients: int,
    commands: Any,
    results: Any,
) -> None:
    """``clients`` SDK clients in one process (numbered from ``first``, for their hubs)."""
    logging.getLogger("agentops_sdk").setLevel(logging.ERROR)  # a refused stream warns
    with tempfile.TemporaryDirectory() as folder:
        made = [
            _client(urls[n % len(urls)], api_key, poll, Path(folder) / str(n))
            for n in range(first, first + clients)
        ]
        for client in made:
            _wait_until(client.enforcer.link, lambda controls: controls is not None)
        results.put("ready")
        while commands.get() == "watch":
            for client in made:  # the last kill was lifted: each client knows it first
                _wait_until(client.enforcer.link, lambda controls: not _kills(controls))
            soak = threading.Barrier(len(made))
            outcomes = [_watch_for_a_kill(client, soak) for client in made]
            results.put("watching")
            seen = [outcome.result(120) for outcome in outcomes]
            results.put(([moment for moment, _ in seen], sum(ran for _, ran in seen)))
        for client in made:
            client.shutdown(1.0)


def _client(url: str, api_key: str, poll: float | None, folder: Path) -> Client:
    """A client of the hub at ``url``; polling every ``poll`` s if given: its stream refused."""
    options = Options(hub_url=url, api_key=api_key, exporter="none", spool_dir=folder)
    if poll is None:
        return Client(options)
    source = HubStream(url, api_key, poll_interval=poll, saved=SavedControls(folder, url, api_key))
    source.stream_url = url + "/api/v1/no-stream"  # 404: the client falls back to polling
    return Client(options, hub_source=source)


def _kills(controls: ControlSet | None) -> bool:
    return controls is not None and any(c.state == "killed" for c in controls.controls)


def _wait_until(link: HubLink, holds: Callable[[ControlSet | None], bool]) -> None:
    if not link.wait_until(lambda: holds(link.snapshot.get("controls")), 60):
        raise SystemExit("a client did not hear the hub's controls within 60 s")


def _guarded(client: Client, spec: CallSpec, body: Callable[[], object]) -> None:
    """Call ``body`` as a decorated tool of ``client`` does (the decorator uses the process's
    one client; these are many): its guard first, then the body in the span."""
    span = client.start(spec)
    if span is None:
        body()
        return
    try:
        result = body()
    except BaseException as exc:
        client.fail_span(span, exc)
        raise
    client.end_span(span, spec, result)


def _watch_for_a_kill(client: Client, soak: threading.Barrier) -> Future[tuple[float, int]]:
    """On a thread, :func:`_refusal_then_soak`; the future gets what it returns."""
    outcome: Future[tuple[float, int]] = Future()

    def watch() -> None:
        try:
            outcome.set_result(_refusal_then_soak(client, soak))
        except Exception as exc:
            soak.abort()
            outcome.set_exception(exc)

    threading.Thread(target=watch, daemon=True).start()
    return outcome


def _refusal_then_soak(client: Client, soak: threading.Barrier) -> tuple[float, int]:
    """Wait until ``client``'s link brings a kill (the snapshot is published and waiters
    notified at once), then call a tool until its guard refuses: the moment. Once every client
    of the process is there (``soak``: no client's calls hold up another's link), try 1,000
    more calls: how many tool bodies ran (must be 0)."""
    link = client.enforcer.link
    probe = CallSpec(kind="tool", name="probe")
    ran = 0

    def body() -> None:
        nonlocal ran
        ran += 1

    link.wait_until(lambda: _kills(link.snapshot.get("controls")), 120)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            _guarded(client, probe, body)
        except agentops.AgentKilled:
            break
    else:
        raise RuntimeError("a client holds a kill and its guard lets calls through")
    moment = time.time()
    soak.wait(120)
    ran = 0
    for _ in range(1_000):
        with suppress(agentops.AgentKilled):
            _guarded(client, probe, body)
    return moment, ran


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
    reach.add_argument("--kills", type=int, default=5, help="per path, and polling")
    reach.add_argument(
        "--poll-interval", type=float, default=1.0, help="the poll fallback's; 0: not measured"
    )
    reach.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    reach.add_argument(
        "--poll-clients", type=int, help="in the polling fleet; --clients if not given"
    )
    arguments = parser.parse_args()
    if arguments.command == "propagation" and arguments.poll_clients is None:
        arguments.poll_clients = arguments.clients
    {"overhead": overhead, "propagation": propagation}[arguments.command](arguments)


if __name__ == "__main__":
    main()
