"""Emergency controls with real processes: an agent process making tool calls
(``agent_controls``), real ``agentops-hub serve`` processes on SQLite or PostgreSQL, and, where
several hubs must share one, a real Redis server of the test's own.

Specification: a control set through the hub's API reaches a running agent, which refuses its
next call before the tool's body runs and never runs it again while the control holds; pauses
lift on resume or at their expiry; a control on a tag, a team, an environment or one run covers
exactly those calls; a change made through one hub reaches an agent streaming from another, over
Redis and with Redis down; an agent restarted with the hub down still obeys the last kill it
saw, and one that never heard from the hub follows ``on_stale``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentops_server.services.identity.api_keys import IssuedKey
from tests.e2e.agents import StartAgent, agent_starter
from tests.e2e.hubs import hub
from tests.sdk.fake_hub import free_port
from tests.server.database import rows
from tests.server.servers import HubProcess, wait_until


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def start_agent(spool_dir: Path) -> Iterator[StartAgent]:
    """``start_agent(hub_url, api_key, **options)``: an ``agent_controls`` process with
    ``AGENTOPS_<OPTION>`` variables from ``options``."""
    with agent_starter("tests.e2e.agent_controls", spool_dir) as start:
        yield start


class Controls:
    """The hub's controls API, as an operator with the org's admin key uses it."""

    def __init__(self, hub_url: str, api_key: str) -> None:
        self.http = httpx.Client(
            base_url=hub_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )

    def set(self, kind: str, value: str | None, state: str, **fields: Any) -> dict[str, Any]:
        """Set the control of one scope; the control."""
        body = {"scope": {"kind": kind, "value": value}, "state": state, "reason": "e2e", **fields}
        response = self.http.post("/api/v1/controls", json=body)
        assert response.status_code in (200, 201), response.text
        control: dict[str, Any] = response.json()
        return control

    def clear(self, control: dict[str, Any]) -> None:
        response = self.http.delete(f"/api/v1/controls/{control['id']}", params={"reason": "e2e"})
        assert response.status_code in (200, 204), response.text

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        created: dict[str, Any] = response.json()
        return created


@pytest.fixture
def served(migrated_url: str, org: IssuedKey) -> Iterator[tuple[HubProcess, Controls]]:
    """A hub process and its controls API."""
    with hub(migrated_url) as process:
        yield process, Controls(process.url, org.key)


# -- one agent, one hub ----------------------------------------------------------------------------


def test_a_kill_through_the_api_refuses_the_next_call_before_the_tools_body_runs_and_each_later(
    served: tuple[HubProcess, Controls],
    start_agent: StartAgent,
    org: IssuedKey,
    migrated_url: str,
) -> None:
    process, controls = served
    agent = start_agent(process.url, org.key)
    assert agent.outcomes(3) == {"ok"}

    kill = controls.set("agent", "support", "killed")
    refused = agent.until("AgentKilled")
    ran = refused["ran"]
    assert agent.outcomes(50) == {"AgentKilled"}
    assert agent.ask(calls=1)["ran"] == ran, "the tool's body never ran again"
    agent.stop()

    blocked = [
        str(events)
        for (events,) in rows(migrated_url, "SELECT events FROM spans WHERE status = 'blocked'")
    ]
    decided = [events for events in blocked if "agentops.decision" in events]
    assert len(decided) >= 51, "each refused call is a blocked span with its decision"
    assert all(kill["id"] in events for events in decided), "naming the control that refused it"


def test_a_pause_refuses_calls_until_it_is_resumed(
    served: tuple[HubProcess, Controls], start_agent: StartAgent, org: IssuedKey
) -> None:
    process, controls = served
    agent = start_agent(process.url, org.key)

    controls.set("org", None, "paused")
    agent.until("AgentPaused")
    assert agent.outcomes(5) == {"AgentPaused"}
    controls.set("org", None, "active")
    agent.until("ok")
    assert agent.outcomes(5) == {"ok"}


def test_a_timed_pause_lifts_itself_when_it_expires(
    served: tuple[HubProcess, Controls], start_agent: StartAgent, org: IssuedKey
) -> None:
    process, controls = served
    agent = start_agent(process.url, org.key)

    pause = controls.set("agent", "support", "paused", duration=3)
    agent.until("AgentPaused")
    lifted = agent.until("ok")

    expires_at = pause["expires_at"]
    assert lifted["at"] >= _timestamp(expires_at) - 0.5, "not before its expiry (clock slack)"


def test_controls_on_a_tag_a_team_and_an_environment_cover_exactly_their_calls(
    served: tuple[HubProcess, Controls], start_agent: StartAgent, org: IssuedKey
) -> None:
    process, controls = served
    team = controls.post("/api/v1/teams", {"name": "ops"})
    controls.post("/api/v1/agents", {"name": "support", "team_id": team["id"]})
    controls.post("/api/v1/agents", {"name": "other"})
    agent = start_agent(process.url, org.key)

    on_tag = controls.set("tag", "billing", "killed")
    agent.until("AgentKilled", tags=["billing"])
    assert agent.outcomes(3, tags=["search"]) == {"ok"}
    controls.clear(on_tag)
    agent.until("ok", tags=["billing"])

    on_team = controls.set("team", "ops", "killed")
    agent.until("AgentKilled", agent="support")
    assert agent.outcomes(3, agent="other") == {"ok"}
    controls.clear(on_team)
    agent.until("ok", agent="support")

    controls.set("environment", "prod", "killed")
    on_test = controls.set("environment", "test", "paused")
    agent.until("AgentPaused", agent="other")
    controls.clear(on_test)
    agent.until("ok", agent="other")
    assert agent.outcomes(3, agent="support") == {"ok"}, "the prod kill covers no test call"


def test_a_run_level_kill_stops_that_run_and_no_other(
    served: tuple[HubProcess, Controls], start_agent: StartAgent, org: IssuedKey
) -> None:
    process, controls = served
    agent = start_agent(process.url, org.key)
    run_id = agent.ask(open="support")["run_id"]

    controls.set("run", run_id, "killed")
    agent.until("AgentKilled")
    agent.ask(close=True)
    assert agent.outcomes(3) == {"ok"}, "each new run is another run"


# -- several hubs ----------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis server of this test's own (so that the test can stop it)."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (.ci/run installs it)"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        assert wait_until(lambda: _answers(port), 10), "redis-server did not start"
        yield url
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_change_through_one_hub_reaches_an_agent_on_another_over_redis_and_with_redis_down(
    migrated_url: str,
    org: IssuedKey,
    redis_url: str,
    start_agent: StartAgent,
) -> None:
    # Only the version watch could carry a change without Redis: slowed down here, the first
    # change must come over Redis.
    with (
        hub(migrated_url, redis_url=redis_url, stream_watch_interval="30") as first,
        hub(migrated_url, redis_url=redis_url) as second,
    ):
        controls = Controls(first.url, org.key)
        agent = start_agent(second.url, org.key)
        assert agent.outcomes(1) == {"ok"}

        kill = controls.set("agent", "support", "killed")
        agent.until("AgentKilled")

        port = int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
        _stop_redis(port)
        controls.clear(kill)  # the hub still answers; the second hub's watch finds it
        agent.until("ok")


# -- the hub out of reach --------------------------------------------------------------------------


def test_an_agent_restarted_with_the_hub_down_still_obeys_the_last_kill_it_saw(
    start_agent: StartAgent, migrated_url: str, org: IssuedKey
) -> None:
    with hub(migrated_url) as process:
        agent = start_agent(process.url, org.key)
        Controls(process.url, org.key).set("org", None, "killed")
        agent.until("AgentKilled")
        agent.stop()

    restarted = start_agent(process.url, org.key)  # the same hub, down now
    assert restarted.outcomes(3) == {"AgentKilled"}
    assert restarted.ask(status=True)["source"] == "disk"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("on_stale", "outcome"), [("stop", "AgentKilled"), ("pause", "AgentPaused")]
)
def test_an_agent_that_hears_nothing_for_too_long_follows_on_stale(
    start_agent: StartAgent, org: IssuedKey, on_stale: str, outcome: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    agent = start_agent(nowhere, org.key, max_staleness=1, on_stale=on_stale)

    agent.until(outcome)
    assert agent.ask(status=True)["stale"] is True
    patient = start_agent(nowhere, org.key, max_staleness=1, on_stale="continue")
    assert patient.outcomes(3) == {"ok"}


# -- helpers ---------------------------------------------------------------------------------------


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _answers(port: int) -> bool:
    try:
        return (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"],
                check=False,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            == "PONG"
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _stop_redis(port: int) -> None:
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "nosave"], check=False, capture_output=True
    )
    assert wait_until(lambda: not _answers(port), 10), "redis-server did not stop"
