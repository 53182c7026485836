"""Delivery with real SDK agent processes: outages, the SDK's own ceiling, end to end, soak.

    pip install -e ".[server,bench]"
    python benchmarks/delivery.py outage [--spans 100000] [--rate 800] [--outage 60]
    python benchmarks/delivery.py ceiling [--rates 5000,10000,20000,40000] [--seconds 10]
    python benchmarks/delivery.py end-to-end [--agents 1,2,4] [--workers 1,2] [--seconds 20]
    python benchmarks/delivery.py soak [--minutes 5] [--peak SPANS_PER_S]

Every agent is ``python -m tests.e2e.agent_load`` (run from the repository's root), a real
process with the SDK configured from ``AGENTOPS_*`` variables and default settings otherwise;
every hub is ``agentops-hub serve`` on a fresh database (see benchmarks/ingest.py).

- outage: one agent emits ``--spans`` spans (runs of 1,000) at ``--rate``; after 20% the hub is
  SIGKILLed and restarted on the same port and database ``--outage`` seconds later. Reported:
  spans lost (emitted minus stored), events the SDK sent more than once, and the seconds from
  the hub answering /ready again to the spool being empty (the backlog delivered), on SQLite and
  PostgreSQL.
- ceiling: the SDK alone, one agent at each fixed rate for ``--seconds`` against a local
  endpoint that accepts everything; the highest rate with nothing dropped and nothing left
  behind in the spool when the run ends.
- end-to-end: 1, 2 and 4 agents in a tight loop against a hub with 1 and 2 workers on
  PostgreSQL: spans stored per second while they run, next to benchmarks/ingest.py's figure for
  pre-built 100-span payloads on the same workers.
- soak: agents at 80% of ``--peak`` spans/s (default: measured as in end-to-end with 2 agents
  and 2 workers) for ``--minutes``: the hub's resident memory (all its processes) at the
  start, at the end and at most, sampled every second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # benchmarks/ingest.py: its database, hub and counting helpers are shared

ROOT = Path(__file__).resolve().parents[1]
RUN_SPANS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    outage = commands.add_parser("outage")
    outage.add_argument("--spans", type=int, default=100_000)
    outage.add_argument("--rate", type=float, default=800.0)
    outage.add_argument("--outage", type=float, default=60.0)
    outage.add_argument("--databases", default="sqlite,postgresql")
    ceiling = commands.add_parser("ceiling")
    ceiling.add_argument("--rates", default="5000,10000,20000,30000,40000")
    ceiling.add_argument("--seconds", type=float, default=10.0)
    end_to_end = commands.add_parser("end-to-end")
    end_to_end.add_argument("--agents", default="1,2,4")
    end_to_end.add_argument("--workers", default="1,2")
    end_to_end.add_argument("--seconds", type=float, default=20.0)
    soak = commands.add_parser("soak")
    soak.add_argument("--minutes", type=float, default=5.0)
    soak.add_argument("--peak", type=float, help="spans/s; default: measured (2 agents, 2 workers)")
    arguments = parser.parse_args()
    {
        "outage": run_outage,
        "ceiling": run_ceiling,
        "end-to-end": run_end_to_end,
        "soak": run_soak,
    }[arguments.command](arguments)


# -- (a) outage ----------------------------------------------------------------------------------


def run_outage(arguments: argparse.Namespace) -> None:
    runs = arguments.spans // RUN_SPANS
    print(
        f"one agent, {runs * RUN_SPANS:,} spans at {arguments.rate:.0f}/s, hub SIGKILLed after "
        f"20% and restarted {arguments.outage:.0f} s later"
    )
    print(
        f"{'database':<12}{'emitted':>9}{'stored':>9}{'lost':>6}{'sent twice':>11}"
        f"{'backlog':>9}{'delivered after return':>24}"
    )
    for database in arguments.databases.split(","):
        with ingest.fresh_database(database) as url, tempfile.TemporaryDirectory() as spool:
            key = bootstrap(url)
            port = ingest.free_port()
            hub_url = f"http://127.0.0.1:{port}"
            with hub(url, port, workers=1) as first:
                agent = start_agent(
                    hub_url,
                    key,
                    spool,
                    f"--runs={runs}",
                    f"--spans={RUN_SPANS}",
                    f"--rate={arguments.rate}",
                    "--flush=600",
                )
                wait_for(lambda: ingest.count_spans(url) >= runs * RUN_SPANS // 5, 600)
                os.killpg(first.pid, signal.SIGKILL)
            time.sleep(arguments.outage)  # the outage itself
            backlog = spooled_events(Path(spool))
            with hub(url, port, workers=1):
                back = time.monotonic()
                wait_for(lambda: spooled_events(Path(spool)) == 0, 600, every=0.05)
                drained = time.monotonic() - back
                report = finish(agent)
            stored = ingest.count_spans(url)
        stats = report["stats"]
        print(
            f"{database:<12}{report['emitted']:>9,}{stored:>9,}{report['emitted'] - stored:>6}"
            f"{stats['sent'] - stats['accepted']:>11}{backlog:>9,}{drained:>22.1f} s"
        )


# -- (b) the SDK's ceiling -----------------------------------------------------------------------

ACCEPT_ALL = """
import uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})

uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning",
            access_log=False)
"""


def run_ceiling(arguments: argparse.Namespace) -> None:
    port = ingest.free_port()
    endpoint = subprocess.Popen([sys.executable, "-c", ACCEPT_ALL, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 30)
        print(f"one agent, {arguments.seconds:.0f} s at each rate, an endpoint that accepts all")
        print(f"{'rate':>8}{'achieved':>10}{'dropped':>9}{'spilled':>9}{'left':>6}  sustained")
        best = 0.0
        """The highest achieved rate with nothing dropped or left behind."""
        for rate in (float(rate) for rate in arguments.rates.split(",")):
            with tempfile.TemporaryDirectory() as spool:
                spans = int(rate * arguments.seconds)
                runs = max(1, spans // RUN_SPANS)
                agent = start_agent(
                    url,
                    "ak_bench",
                    spool,
                    f"--runs={runs}",
                    f"--spans={spans // runs}",
                    f"--rate={rate}",
                    "--flush=5",
                )
                report = finish(agent)
            stats = report["stats"]
            dropped = sum(stats["dropped"].values())
            left = report["result"]["pending"] + report["result"]["spool_pending"]
            elapsed = report["last_emitted"] - report["ready"]
            achieved = report["emitted"] / elapsed
            sustained = dropped == 0 and left == 0
            best = max(best, achieved) if sustained else best
            print(
                f"{rate:>8,.0f}{achieved:>10,.0f}{dropped:>9}"
                f"{stats['spooled']:>9}{left:>6}  {'yes' if sustained else 'no'}"
            )
        print(f"highest emission rate with nothing dropped or left behind: {best:,.0f} spans/s")
    finally:
        endpoint.terminate()
        endpoint.wait(10)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


# -- (c) end to end ------------------------------------------------------------------------------


def run_end_to_end(arguments: argparse.Namespace) -> None:
    print(f"agents in a tight loop against a hub on PostgreSQL, {arguments.seconds:.0f} s each")
    print(f"{'workers':>8}{'agents':>7}{'spans/s stored':>16}{'pre-built payloads':>20}")
    for workers in (int(w) for w in arguments.workers.split(",")):
        prebuilt = prebuilt_figure(workers, arguments.seconds)
        for agents in (int(a) for a in arguments.agents.split(",")):
            stored = stored_per_second(agents, workers, arguments.seconds)
            print(f"{workers:>8}{agents:>7}{stored:>16,.0f}{prebuilt:>20,.0f}")


def stored_per_second(agents: int, workers: int, seconds: float, rate: float = 0.0) -> float:
    """Spans per second stored while ``agents`` agents record (at ``rate`` each; 0: flat out)."""
    with ingest.fresh_database("postgresql") as url, tempfile.TemporaryDirectory() as spool:
        key = bootstrap(url)
        port = ingest.free_port()
        with hub(url, port, workers):
            hub_url = f"http://127.0.0.1:{port}"
            started = [
                start_agent(
                    hub_url,
                    key,
                    f"{spool}/{index}",
                    "--runs=100000",
                    f"--spans={RUN_SPANS}",
                    f"--rate={rate}",
                )
                for index in range(agents)
            ]
            time.sleep(2.0)  # warm-up: connections open, the hub's caches filled
            first, begun = ingest.count_spans(url), time.monotonic()
            time.sleep(seconds)  # the measured window
            stored, ended = ingest.count_spans(url), time.monotonic()
            for agent in started:
                agent.kill()
                agent.wait()
    return float(stored - first) / (ended - begun)


def prebuilt_figure(workers: int, seconds: float) -> float:
    """benchmarks/ingest.py's spans/s for pre-built 100-span payloads on ``workers`` workers."""
    options = argparse.Namespace(seconds=seconds, clients=4, spans_per_batch=100, workers=workers)
    with ingest.fresh_database("postgresql") as url:
        return float(ingest.measure(url, options)["spans_per_second"])


# -- (d) soak ------------------------------------------------------------------------------------


def run_soak(arguments: argparse.Namespace) -> None:
    peak = arguments.peak or stored_per_second(2, 2, 20.0)
    agents, workers = 2, 2
    rate = 0.8 * peak / agents
    print(
        f"{agents} agents at {rate:,.0f} spans/s each (80% of {peak:,.0f}), "
        f"{arguments.minutes:.0f} min, hub with {workers} workers on PostgreSQL"
    )
    with ingest.fresh_database("postgresql") as url, tempfile.TemporaryDirectory() as spool:
        key = bootstrap(url)
        port = ingest.free_port()
        with hub(url, port, workers) as process:
            hub_url = f"http://127.0.0.1:{port}"
            samples: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(1.0):
                    samples.append(resident_bytes(process.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            started = [
                start_agent(
                    hub_url,
                    key,
                    f"{spool}/{index}",
                    "--runs=1000000",
                    f"--spans={RUN_SPANS}",
                    f"--rate={rate}",
                )
                for index in range(agents)
            ]
            sampler.start()
            time.sleep(arguments.minutes * 60)  # the soak itself
            stop.set()
            sampler.join()
            for agent in started:
                agent.kill()
                agent.wait()
    mib = 1024 * 1024
    print(
        f"hub memory: start {samples[0] / mib:.0f} MiB, end {samples[-1] / mib:.0f} MiB, "
        f"max {max(samples) / mib:.0f} MiB ({len(samples)} samples)"
    )


def resident_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and every process in its session (the hub's workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if os.getsid(int(entry.name)) != pid:
                continue
            status = (entry / "status").read_text()
            line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
            total += int(line.split()[1]) * 1024
    return total


# -- shared --------------------------------------------------------------------------------------


def bootstrap(database_url: str) -> str:
    env = {**os.environ, "AGENTOPS_DATABASE_URL": database_url}
    subprocess.run([*ingest.HUB, "db", "upgrade"], env=env, check=True, capture_output=True)
    answer = subprocess.run(
        [*ingest.HUB, "bootstrap", "--org", "bench", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(answer.stdout.strip().splitlines()[-1])["api_key"])


@contextlib.contextmanager
def hub(database_url: str, port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    """``agentops-hub serve`` in its own session (so it and its workers can be killed as one)."""
    process = subprocess.Popen(
        [*ingest.HUB, "serve", "--port", str(port), "--workers", str(workers), "--no-migrate"],
        env={**os.environ, "AGENTOPS_DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ingest.wait_until_up(f"http://127.0.0.1:{port}", 60)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def start_agent(hub_url: str, key: str, spool: str, *arguments: str) -> subprocess.Popen[str]:
    environment = {name: v for name, v in os.environ.items() if not name.startswith("AGENTOPS_")}
    environment |= {
        "AGENTOPS_HUB_URL": hub_url,
        "AGENTOPS_API_KEY": key,
        "AGENTOPS_SPOOL_DIR": spool,
        "AGENTOPS_ENVIRONMENT": "test",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.agent_load", *arguments],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    process.ready = ready["ready"]  # type: ignore[attr-defined]
    return process


def finish(agent: subprocess.Popen[str]) -> dict[str, Any]:
    """The agent's report once it has flushed and exited."""
    assert agent.stdout is not None
    report: dict[str, Any] = json.loads(agent.stdout.readline())
    agent.wait(600)
    report["ready"] = agent.ready  # type: ignore[attr-defined]
    return report


def spooled_events(spool: Path) -> int:
    """Events in a spool folder's batch files (named ``<batch id>.<events>.json``)."""
    return sum(int(path.name.split(".")[1]) for path in spool.glob("*/*.json"))


def wait_for(condition: Any, timeout: float, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting after {timeout:.0f} s")
        time.sleep(every)


if __name__ == "__main__":
    main()
