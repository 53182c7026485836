"""Emergency controls in the SDK: the hub's pause and kill, obeyed before every call.

The hub's side is played by ``LocalHub`` (the hub link's in-process double): what it publishes
reaches the link's snapshot as the hub's stream would bring it. The stream itself, polling and
the saved copy are specified in ``test_hub_stream.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.contract.controls import AgentProfile
from agentops_sdk.enforcement import LocalHub
from agentops_sdk.errors import EnforcementUnavailable
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_controls import control, control_set

HUB_URL = "http://hub.invalid"
DEADLINE = 5.0
"""Seconds any test waits for something that happens at once in a healthy SDK."""

ran: list[str] = []


@agentops.tool
def deploy(target: str) -> str:
    ran.append(target)
    return f"deployed to {target}"


@agentops.tool(tags=["payments"])
def refund(order: str) -> str:
    ran.append(order)
    return f"refunded {order}"


@agentops.tool
async def adeploy(target: str) -> str:
    ran.append(target)
    return f"deployed to {target}"


@pytest.fixture(autouse=True)
def nothing_ran_yet() -> None:
    ran.clear()


@pytest.fixture
def hub() -> LocalHub:
    return LocalHub()


@pytest.fixture
def governed(hub: LocalHub, tmp_path: Path) -> Iterator[CapturedEvents]:
    """A client of agent ``researcher`` in ``test``, obeying the controls ``hub`` publishes."""
    with capture_events(
        hub_url=HUB_URL,
        api_key="ak_test",
        hub_source=hub,
        agent="researcher",
        spool_dir=tmp_path / "spool",
    ) as events:
        yield events


def publish(events: CapturedEvents, hub: LocalHub, controls: Any) -> None:
    """Publish ``controls`` and wait until the client's link holds it."""
    hub.publish("controls", controls)
    link = events.client.enforcer.link
    assert link.wait_until(lambda: link.snapshot.get("controls") is controls, DEADLINE)


def decisions(events: CapturedEvents, name: str) -> list[dict[str, Any]]:
    """The decision records of every span called ``name``, in order."""
    spans = [span for span in events.spans if span.name == name]
    return [record.model_dump() for span in spans for record in span.decisions]


def in_thread(call: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    """Run ``call(*args)`` in a thread; its result or exception lands in the returned list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call(*args))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# -- kill ---------------------------------------------------------------------------------------


def test_a_killed_agent_is_refused_before_the_tool_body_runs_and_the_kill_is_recorded(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    kill = control("killed", "agent", "researcher", reason="runaway loop", actor="ada@example.com")
    publish(governed, hub, control_set(kill))

    with pytest.raises(agentops.AgentKilled) as raised:
        deploy("prod")

    assert ran == []
    assert raised.value.rule == str(kill.id)
    assert str(raised.value) == (
        "researcher is killed by the hub (agent researcher, by ada@example.com): runaway loop"
    )
    assert governed.span("deploy").status == "blocked"
    assert decisions(governed, "deploy") == [
        {
            "outcome": "deny",
            "stage": "controls",
            "rule": str(kill.id),
            "reason": "runaway loop",
            "details": {
                "state": "killed",
                "scope": {"kind": "agent", "value": "researcher"},
                "actor": "ada@example.com",
                "version": 1,
                "expires_at": None,
                "pause_timeout": 0.0,
            },
        }
    ]


def test_after_a_kill_the_tool_body_never_runs_again_until_the_kill_is_lifted(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    assert deploy("before") == "deployed to before"
    publish(governed, hub, control_set(control("killed"), version=2))

    for attempt in range(50):
        with pytest.raises(agentops.AgentKilled):
            deploy(f"attempt {attempt}")
    assert ran == ["before"]

    publish(governed, hub, control_set(version=3))
    assert deploy("after") == "deployed to after"
    assert ran == ["before", "after"]


async def test_an_async_call_of_a_killed_agent_is_refused_before_it_runs(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    publish(governed, hub, control_set(control("killed", "environment", "test")))

    with pytest.raises(agentops.AgentKilled):
        await adeploy("prod")

    assert ran == []


def test_a_run_level_kill_stops_that_run_only(governed: CapturedEvents, hub: LocalHub) -> None:
    outcomes: dict[str, str] = {}

    @agentops.agent(name="researcher")
    def research(label: str, kill_this_run: bool) -> None:
        if kill_this_run:
            run_id = agentops.current_span().run_id
            publish(governed, hub, control_set(control("killed", "run", run_id)))
        try:
            outcomes[label] = deploy(label)
        except agentops.AgentKilled as exc:
            outcomes[label] = f"killed: {exc.rule}"

    research("doomed", True)
    research("healthy", False)

    assert outcomes["doomed"].startswith("killed: ")
    assert outcomes["healthy"] == "deployed to healthy"
    assert ran == ["healthy"]


# -- pause --------------------------------------------------------------------------------------


def test_a_pause_with_no_timeout_refuses_at_once(governed: CapturedEvents, hub: LocalHub) -> None:
    pause = control("paused", reason="maintenance window")
    publish(governed, hub, control_set(pause))

    started = time.monotonic()
    with pytest.raises(agentops.AgentPaused, match="maintenance window") as raised:
        deploy("prod")

    assert time.monotonic() - started < 1.0
    assert ran == []
    assert raised.value.rule == str(pause.id)
    assert governed.span("deploy").status == "blocked"


def test_a_call_held_by_a_pause_runs_once_the_pause_is_lifted(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    pause = control("paused", "agent", "researcher", pause_timeout=60.0)
    publish(governed, hub, control_set(pause))
    link = governed.client.enforcer.link

    thread, outcome = in_thread(deploy, "prod")
    assert link.wait_until(lambda: link.waiting == 1, DEADLINE)  # held, not refused
    assert ran == []

    publish(governed, hub, control_set(version=2))
    thread.join(DEADLINE)

    assert outcome == ["deployed to prod"]
    (record,) = decisions(governed, "deploy")
    assert (record["outcome"], record["stage"], record["rule"]) == (
        "allow",
        "controls",
        str(pause.id),
    )
    assert record["reason"] == "the pause was lifted"
    assert record["details"]["waited_ms"] > 0


async def test_an_async_call_held_by_a_pause_is_awaited_and_runs_once_it_is_lifted(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    publish(governed, hub, control_set(control("paused", pause_timeout=60.0)))
    link = governed.client.enforcer.link
    task = asyncio.ensure_future(adeploy("prod"))
    while link.waiting == 0:
        await asyncio.sleep(0.01)  # the event loop keeps running while the call is held

    hub.publish("controls", control_set(version=2))

    assert await asyncio.wait_for(task, DEADLINE) == "deployed to prod"


def test_a_call_held_past_the_pause_timeout_is_refused_with_agent_paused(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    pause = control("paused", pause_timeout=0.3, reason="deploy freeze")
    publish(governed, hub, control_set(pause))

    started = time.monotonic()
    with pytest.raises(agentops.AgentPaused, match="deploy freeze"):
        deploy("prod")

    assert time.monotonic() - started >= 0.3
    assert ran == []
    (record,) = decisions(governed, "deploy")
    assert (record["outcome"], record["rule"]) == ("deny", str(pause.id))
    assert record["details"]["waited_ms"] >= 300


def test_a_kill_while_a_call_is_held_by_a_pause_refuses_it_with_agent_killed(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    publish(governed, hub, control_set(control("paused", pause_timeout=60.0)))
    link = governed.client.enforcer.link
    thread, outcome = in_thread(deploy, "prod")
    assert link.wait_until(lambda: link.waiting == 1, DEADLINE)

    kill = control("killed", "agent", "researcher")
    publish(governed, hub, control_set(kill, version=2))
    thread.join(DEADLINE)

    (error,) = outcome
    assert isinstance(error, agentops.AgentKilled)
    assert error.rule == str(kill.id)
    assert ran == []


# -- expiry -------------------------------------------------------------------------------------


def test_a_timed_pause_stops_applying_when_it_expires(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=0.5)
    publish(governed, hub, control_set(control("paused", expires_at=expires_at)))

    refused_before = 0
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            deploy("prod")
            break
        except agentops.AgentPaused:
            assert datetime.now(UTC) < expires_at + timedelta(milliseconds=50)
            refused_before += 1
            time.sleep(0.02)

    assert ran == ["prod"]
    assert refused_before > 0
    assert datetime.now(UTC) >= expires_at


def test_a_call_held_by_a_timed_pause_runs_when_the_pause_expires(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=0.5)
    publish(governed, hub, control_set(control("paused", expires_at=expires_at, pause_timeout=60)))

    started = time.monotonic()
    assert deploy("prod") == "deployed to prod"

    assert datetime.now(UTC) >= expires_at
    assert time.monotonic() - started < DEADLINE
    (record,) = decisions(governed, "deploy")
    assert record["outcome"] == "allow"


def test_an_expired_control_never_applies(governed: CapturedEvents, hub: LocalHub) -> None:
    expired = datetime.now(UTC) - timedelta(seconds=1)
    publish(governed, hub, control_set(control("killed", expires_at=expired)))

    assert deploy("prod") == "deployed to prod"


# -- scopes and precedence ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "agents", "applies"),
    [
        ("org", None, (), True),
        ("environment", "test", (), True),
        ("environment", "prod", (), False),
        ("agent", "researcher", (), True),
        ("agent", "writer", (), False),
        ("team", "growth", (AgentProfile(name="researcher", team="growth"),), True),
        ("team", "growth", (AgentProfile(name="writer", team="growth"),), False),
        ("team", "billing", (AgentProfile(name="researcher", team="growth"),), False),
        ("tag", "payments", (), True),  # the tool's own tag
        ("tag", "eu", (), True),  # a tag of the run (the client's ``tags`` option)
        ("tag", "risky", (AgentProfile(name="researcher", tags=("risky",)),), True),
        ("tag", "batch", (), False),
    ],
    ids=lambda value: str(value) if not isinstance(value, tuple) else "profiles",
)
def test_a_kill_applies_exactly_to_calls_in_its_scope(
    hub: LocalHub,
    tmp_path: Path,
    kind: Any,
    value: str | None,
    agents: tuple[AgentProfile, ...],
    applies: bool,
) -> None:
    with capture_events(
        hub_url=HUB_URL,
        api_key="ak_test",
        hub_source=hub,
        agent="researcher",
        tags=("eu",),
        spool_dir=tmp_path,
    ) as events:
        publish(events, hub, control_set(control("killed", kind, value), agents=agents))

        if applies:
            with pytest.raises(agentops.AgentKilled):
                refund("order-7")
        else:
            assert refund("order-7") == "refunded order-7"


def test_the_strictest_control_wins_a_kill_over_a_pause_whatever_their_scopes(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    later = datetime.now(UTC) + timedelta(seconds=1)
    pause = control("paused", "agent", "researcher", updated_at=later)
    kill = control("killed", "org")
    publish(governed, hub, control_set(pause, kill))

    with pytest.raises(agentops.AgentKilled) as raised:
        deploy("prod")

    assert raised.value.rule == str(kill.id)


def test_between_equally_strict_controls_the_one_set_last_gives_its_reason(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    now = datetime.now(UTC)
    older = control("killed", "org", reason="old incident", updated_at=now - timedelta(hours=1))
    newer = control("killed", "tag", "payments", reason="refund fraud", updated_at=now)
    publish(governed, hub, control_set(newer, older))

    with pytest.raises(agentops.AgentKilled, match="refund fraud"):
        refund("order-7")
    with pytest.raises(agentops.AgentKilled, match="old incident"):
        deploy("prod")  # no payments tag: only the org kill applies


def test_an_active_control_lifts_nothing_and_refuses_nothing(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    publish(governed, hub, control_set(control("active", "agent", "researcher")))

    assert deploy("prod") == "deployed to prod"


def test_a_control_set_the_stage_cannot_read_refuses_calls_rather_than_letting_them_through(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    publish(governed, hub, {"not": "a control set"})

    with pytest.raises(EnforcementUnavailable):
        deploy("prod")
    assert ran == []


# -- staleness ----------------------------------------------------------------------------------


def stale_client(hub: LocalHub, tmp_path: Path, on_stale: str) -> Any:
    return capture_events(
        hub_url=HUB_URL,
        api_key="ak_test",
        hub_source=hub,
        agent="researcher",
        spool_dir=tmp_path,
        max_staleness=1.0,
        on_stale=on_stale,
        hub_wait=0,  # staleness counts from the start; init() must not wait it out
    )


def wait_until_stale(events: CapturedEvents) -> None:
    deadline = time.monotonic() + DEADLINE
    while not agentops.controls_status().stale:
        assert time.monotonic() < deadline, "the controls never went stale"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("on_stale", "error"),
    [("pause", agentops.AgentPaused), ("stop", agentops.AgentKilled)],
)
def test_past_max_staleness_on_stale_refuses_calls_until_the_hub_is_heard_again(
    hub: LocalHub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    on_stale: str,
    error: type[Exception],
) -> None:
    caplog.set_level(logging.INFO, logger="agentops_sdk")
    with stale_client(hub, tmp_path, on_stale) as events:
        publish(events, hub, control_set())
        assert deploy("fresh") == "deployed to fresh"

        wait_until_stale(events)
        for _ in range(3):
            with pytest.raises(error, match="no news from the hub"):
                deploy("stale")

        publish(events, hub, control_set(version=2))
        assert deploy("heard again") == "deployed to heard again"

    assert ran == ["fresh", "heard again"]
    refusals = [(d["outcome"], d["stage"], d["rule"]) for d in decisions(events, "deploy")]
    assert refusals == [("deny", "controls", "stale")] * 3
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "no news from the hub for" in m]) == 1
    assert len([m for m in messages if "the hub is heard again" in m]) == 1


def test_past_max_staleness_on_stale_continue_lets_calls_go_on_and_logs_once(
    hub: LocalHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentops_sdk")
    with stale_client(hub, tmp_path, "continue") as events:
        publish(events, hub, control_set())
        wait_until_stale(events)
        for attempt in range(3):
            deploy(f"attempt {attempt}")

    assert len(ran) == 3
    stale = [r for r in caplog.records if "no news from the hub" in r.getMessage()]
    assert len(stale) == 1
    assert "on_stale=continue" in stale[0].getMessage()


def test_a_known_kill_still_wins_over_a_stale_pause(hub: LocalHub, tmp_path: Path) -> None:
    with stale_client(hub, tmp_path, "pause") as events:
        publish(events, hub, control_set(control("killed")))
        wait_until_stale(events)

        with pytest.raises(agentops.AgentKilled):
            deploy("prod")


def test_a_client_that_never_heard_the_hub_goes_stale_max_staleness_after_it_started(
    tmp_path: Path,
) -> None:
    silent = LocalHub()
    with stale_client(silent, tmp_path, "pause") as events:
        assert agentops.controls_status().stale is False
        wait_until_stale(events)

        with pytest.raises(agentops.AgentPaused):
            deploy("prod")


# -- status and switching off ---------------------------------------------------------------------


def test_controls_status_reports_source_age_and_version(
    governed: CapturedEvents, hub: LocalHub
) -> None:
    status = agentops.controls_status()
    assert (status.enabled, status.source, status.age, status.version, status.stale) == (
        True,
        "none",
        None,
        None,
        False,
    )

    publish(governed, hub, control_set(version=7))
    heard = agentops.controls_status()
    assert (heard.source, heard.version, heard.stale) == ("stream", 7, False)
    assert heard.age is not None
    assert 0 <= heard.age < DEADLINE
    later = time.monotonic() + 0.05
    while time.monotonic() < later:
        time.sleep(0.01)
    older = agentops.controls_status().age
    assert older is not None
    assert older > heard.age


@pytest.mark.parametrize(
    "settings",
    [{"controls": False}, {"api_key": None}, {"hub_url": None}],
    ids=["controls off", "no api key", "no hub"],
)
def test_without_a_hub_and_key_or_with_controls_off_no_control_is_obeyed(
    hub: LocalHub, tmp_path: Path, settings: dict[str, Any]
) -> None:
    options: dict[str, Any] = {"hub_url": HUB_URL, "api_key": "ak_test", "spool_dir": tmp_path}
    with capture_events(hub_source=hub, **(options | settings)) as events:
        hub.publish("controls", control_set(control("killed")))

        assert deploy("prod") == "deployed to prod"
        assert events.client.controls is None
        assert events.client.enforcer.active is False
        assert agentops.controls_status() == agentops.ControlsStatus(
            enabled=False, source="none", age=None, version=None, stale=False
        )


def test_agentops_controls_false_turns_controls_off_through_init(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTOPS_CONTROLS", "false")
    client = agentops.init(
        hub_url="http://127.0.0.1:9",
        api_key="ak_test",
        spool_dir=tmp_path,
        exporter="memory",
        integrations=[],
    )
    try:
        assert client is not None
        assert client.controls is None
        assert not client.enforcer.link.running
    finally:
        agentops.shutdown()


def test_init_with_a_hub_and_key_obeys_controls_through_the_hubs_stream(tmp_path: Path) -> None:
    client = agentops.init(
        hub_url="http://127.0.0.1:9",
        api_key="ak_test",
        spool_dir=tmp_path,
        exporter="memory",
        integrations=[],
        hub_wait=0,  # nothing answers there
    )
    try:
        assert client is not None
        assert client.controls is not None
        assert type(client.enforcer.link.source).__name__ == "HubStream"
        assert client.enforcer.link.running
    finally:
        agentops.shutdown()
    assert not client.enforcer.link.running


# -- the registry's environments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environments", "refused"), [(("prod",), True), (("prod", "test"), False), ((), False)]
)
def test_an_agent_the_registry_keeps_out_of_this_environment_is_killed_here(
    governed: CapturedEvents, hub: LocalHub, environments: tuple[str, ...], refused: bool
) -> None:
    profile = AgentProfile(name="researcher", environments=environments)
    publish(governed, hub, control_set(agents=(profile,)))

    if refused:
        with pytest.raises(agentops.AgentKilled, match="not enabled for the test environment"):
            deploy("eu-1")
        assert ran == []
        [decision] = decisions(governed, "deploy")
        assert decision["details"]["actor"] == "registry"
    else:
        assert deploy("eu-1") == "deployed to eu-1"
