"""Delivery that loses nothing, with real processes: an agent process (``agent_load``) recording
at a fixed rate or in a tight loop, a real ``agentops-hub serve`` process on SQLite or
PostgreSQL, and, where the hub must refuse or be slow, a real proxy between them.

Specification: while the hub is unreachable (killed), throttles (429) or fails (503), no event
the SDK accepted is dropped while the spool has room, nothing is stored twice, and everything
arrives once the hub answers again; an agent that outpaces the hub spills to the spool instead
of dropping, and past the spool's bound the drop count is exactly what is missing; shutdown
after an outage reports exactly what was delivered and what the spool still holds, and the
next process with the same hub and key delivers the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentops_server.services.identity.api_keys import IssuedKey
from tests.e2e.hubs import hub
from tests.e2e.proxy import Proxy
from tests.sdk.fake_hub import free_port
from tests.server.database import scalar
from tests.server.servers import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0
"""How long an agent process may take to deliver its load once the hub is back."""


class Agent:
    """An ``agent_load`` process and the JSON lines it prints."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def line(self) -> dict[str, Any]:
        """The next JSON line the agent prints (fails if it exits first)."""
        assert self.process.stdout is not None
        text = self.process.stdout.readline()
        if not text:
            assert self.process.stderr is not None
            pytest.fail(f"the agent exited without a report:\n{self.process.stderr.read()}")
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    def report(self) -> dict[str, Any]:
        """The agent's final report, once it has flushed or shut down and exited."""
        report = self.line()
        assert self.process.wait(DEADLINE) == 0
        return report

    def proceed(self) -> None:
        """Let an agent started with ``--hold`` go on to its flush or shutdown."""
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def start_agent(spool_dir: Path) -> Iterator[Callable[..., Agent]]:
    """``start_agent(hub_url, api_key, *arguments, **options)``: an ``agent_load`` process
    shipping to ``hub_url``, with ``AGENTOPS_<OPTION>`` variables from ``options``."""
    started: list[subprocess.Popen[str]] = []

    def start(hub_url: str, api_key: str, *arguments: str, **options: Any) -> Agent:
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("AGENTOPS_")
        }
        environment |= {
            "AGENTOPS_HUB_URL": hub_url,
            "AGENTOPS_API_KEY": api_key,
            "AGENTOPS_SPOOL_DIR": str(spool_dir),
            "AGENTOPS_ENVIRONMENT": "test",
            "AGENTOPS_MAX_BACKOFF": "1",
            # Delivery alone: the controls link's requests would pass the proxy too, and be
            # counted and refused with the batches.
            "AGENTOPS_CONTROLS": "false",
        }
        environment |= {f"AGENTOPS_{name.upper()}": str(value) for name, value in options.items()}
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.agent_load", *arguments],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        agent = Agent(process)
        assert "ready" in agent.line()
        return agent

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def stored_spans(database_url: str) -> int:
    return int(scalar(database_url, "SELECT count(*) FROM spans"))


def finished_runs(database_url: str) -> int:
    return int(scalar(database_url, "SELECT count(*) FROM runs WHERE status = 'ok'"))


def spooled_events(spool_dir: Path) -> int:
    """Events in the spool's files (each file is named ``<batch id>.<events>.json``)."""
    return sum(int(path.name.split(".")[1]) for path in spool_dir.glob("*/*.json"))


def spool_bytes(spool_dir: Path) -> int:
    return sum(path.stat().st_size for path in spool_dir.glob("*/*.json"))


def assert_delivered_exactly(report: dict[str, Any], database_url: str, runs: int) -> None:
    """Every span stored once, every run finished, nothing dropped, the spool empty."""
    stats = report["stats"]
    assert stats["dropped"] == dict.fromkeys(stats["dropped"], 0)
    assert report["result"]["completed"]
    assert stats["sent"] == stats["accepted"], "every accepted event delivered, and once"
    assert stats["spool_pending"] == 0
    assert stored_spans(database_url) == report["emitted"]
    assert finished_runs(database_url) == runs


# -- outages -------------------------------------------------------------------------------------


def test_an_agent_loses_nothing_while_the_hub_is_killed_and_restarted_on_the_same_port(
    start_agent: Callable[..., Agent], migrated_url: str, org: IssuedKey, spool_dir: Path
) -> None:
    runs, spans = 6, 1000
    port = free_port()
    with hub(migrated_url, port) as first:
        agent = start_agent(first.url, org.key, f"--runs={runs}", f"--spans={spans}", "--rate=1000")
        assert wait_until(lambda: stored_spans(migrated_url) >= runs * spans // 5, DEADLINE)
        os.kill(first.process.pid, signal.SIGKILL)
        assert first.process.wait(10) == -signal.SIGKILL
    # The outage lasts until the agent has spooled a good part of its load.
    assert wait_until(lambda: spooled_events(spool_dir) >= 1000, DEADLINE)

    with hub(migrated_url, port):
        report = agent.report()

    assert report["stats"]["spooled"] >= 1000
    assert_delivered_exactly(report, migrated_url, runs)


@pytest.mark.parametrize(("status", "retry_after"), [(429, 1), (503, None)])
def test_an_agent_loses_nothing_while_the_hub_refuses_every_batch_for_a_while(
    start_agent: Callable[..., Agent],
    migrated_url: str,
    org: IssuedKey,
    spool_dir: Path,
    status: int,
    retry_after: int | None,
) -> None:
    runs, spans = 4, 1000
    with hub(migrated_url) as served, Proxy(served.url) as proxy:
        agent = start_agent(proxy.url, org.key, f"--runs={runs}", f"--spans={spans}", "--rate=1000")
        assert wait_until(lambda: proxy.acknowledged >= 500, DEADLINE)
        proxy.refuse(status, retry_after)
        assert wait_until(lambda: spooled_events(spool_dir) >= 1000, DEADLINE)
        proxy.forward()
        report = agent.report()

    assert proxy.refused > 0
    assert report["stats"]["rate_limited"] == (proxy.refused if status == 429 else 0)
    assert_delivered_exactly(report, migrated_url, runs)
    assert max(proxy.acknowledged_ids.values()) <= 2, "no batch acknowledged twice"


# -- overload ------------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_tight_loop_against_a_slow_hub_spills_to_the_spool_and_drops_nothing(
    start_agent: Callable[..., Agent], migrated_url: str, org: IssuedKey
) -> None:
    runs, spans = 2, 10_000
    with hub(migrated_url) as served, Proxy(served.url) as proxy:
        proxy.delay = 0.2
        agent = start_agent(
            proxy.url,
            org.key,
            f"--runs={runs}",
            f"--spans={spans}",
            "--rate=0",
            max_queue_events=2000,
        )
        report = agent.report()

    assert report["stats"]["spooled"] > 0, "the queue overflowed into the spool"
    assert_delivered_exactly(report, migrated_url, runs)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_past_the_spools_bound_the_drop_count_is_exactly_what_is_missing(
    start_agent: Callable[..., Agent], migrated_url: str, org: IssuedKey
) -> None:
    runs, spans = 2, 10_000
    with hub(migrated_url) as served, Proxy(served.url) as proxy:
        proxy.delay = 0.2
        agent = start_agent(
            proxy.url,
            org.key,
            f"--runs={runs}",
            f"--spans={spans}",
            "--rate=0",
            max_queue_events=1000,
            spool_max_bytes=200_000,
        )
        report = agent.report()

    stats = report["stats"]
    assert stats["dropped"]["spool_full"] > 0
    dropped = sum(stats["dropped"].values())
    assert dropped == stats["dropped"]["spool_full"], "no other cause"
    assert stats["accepted"] - proxy.acknowledged == dropped
    assert stats["sent"] == proxy.acknowledged
    assert max(proxy.acknowledged_ids.values()) <= 2
    assert stored_spans(migrated_url) == len(proxy.acknowledged_ids) - _runs_among(migrated_url)


# -- shutdown ------------------------------------------------------------------------------------


def test_shutdown_after_an_outage_reports_what_was_sent_and_what_the_spool_still_holds(
    start_agent: Callable[..., Agent],
    migrated_url: str,
    org: IssuedKey,
    spool_dir: Path,
) -> None:
    runs, spans = 5, 1000
    with hub(migrated_url) as served, Proxy(served.url) as proxy:
        proxy.refuse(503)
        agent = start_agent(
            proxy.url,
            org.key,
            f"--runs={runs}",
            f"--spans={spans}",
            "--rate=0",
            "--shutdown=3",
            "--hold",
        )
        assert agent.line() == {"emitted": runs * spans}
        # Back, but slow: one request a second, so three seconds deliver some and not all.
        proxy.delay = 1.0
        proxy.forward()
        agent.proceed()
        report = agent.report()

        result, stats = report["result"], report["stats"]
        assert not result["completed"], "3 s is too short to deliver 5,000 slowed events"
        assert 0 < result["sent"] == stats["sent"] <= proxy.acknowledged
        # A request in flight at the deadline may be stored without its answer reaching the
        # SDK: it is not counted as sent, stays in the spool, and is stored once when sent again.
        assert proxy.acknowledged - result["sent"] <= 1000  # one merged request at most
        assert result["spool_pending"] == stats["spool_pending"] == spooled_events(spool_dir) > 0
        assert result["spool_bytes"] == spool_bytes(spool_dir)
        assert result["pending"] == 0
        assert stats["accepted"] == stats["sent"] + result["spool_pending"]
        span_ids = len(proxy.acknowledged_ids) - _runs_among(migrated_url)
        # Every acknowledged span is stored; a request the hub stored while its answer was cut
        # at the deadline (the proxy never saw it) adds at most one request's spans, stored
        # once: the spool sends them again below and the hub keeps each id once.
        assert span_ids <= stored_spans(migrated_url) <= span_ids + 1000

        proxy.delay = 0.0
        start_agent(proxy.url, org.key, "--runs=0", "--flush=60").report()

    assert spooled_events(spool_dir) == 0
    assert stored_spans(migrated_url) == runs * spans
    assert finished_runs(migrated_url) == runs


def _runs_among(database_url: str) -> int:
    """Run ids are event ids too: how many runs the hub has."""
    return int(scalar(database_url, "SELECT count(*) FROM runs"))
