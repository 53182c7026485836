"""The hub's controls reach the SDK over real HTTP: pushed on the event stream, polled with an
ETag when the stream fails, saved to disk for the next process.

The hub's two endpoints are played by :class:`~tests.sdk.fake_controls.ControlsFeed`, served by
the fake hub on 127.0.0.1. Reconnection delays are shortened (``retry_delay``) so that a test
sees several of them; the production defaults are 1 s doubling up to 30 s.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.enforcement import Backoff
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.enforcement.saved import SavedControls
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_controls import (
    CONTROLS_PATH,
    STREAM_PATH,
    ControlsFeed,
    control,
    control_set,
)
from tests.sdk.fake_hub import FakeHub, free_port

KEY = "ak_controls"
DEADLINE = 10.0
ROOT = Path(__file__).resolve().parents[2]

ran: list[str] = []


@agentops.tool
def deploy(target: str) -> str:
    ran.append(target)
    return f"deployed to {target}"


@pytest.fixture(autouse=True)
def nothing_ran_yet() -> None:
    ran.clear()


@pytest.fixture
def feed(hub: FakeHub) -> ControlsFeed:
    return hub.controls


@pytest.fixture
def connect(hub: FakeHub, spool_dir: Path) -> Iterator[Callable[..., CapturedEvents]]:
    """``connect(**options)``: a client of agent ``researcher`` reading ``hub``'s controls."""
    with ExitStack() as stack:

        def start(**options: Any) -> CapturedEvents:
            settings: dict[str, Any] = {
                "hub_url": hub.url,
                "api_key": KEY,
                "spool_dir": spool_dir,
                "agent": "researcher",
                "controls_poll_interval": 0.2,
            }
            settings |= options
            source = HubStream(
                settings["hub_url"],
                settings["api_key"],
                poll_interval=settings["controls_poll_interval"],
                saved=SavedControls(spool_dir, settings["hub_url"], settings["api_key"]),
                retry_delay=0.05,
                max_retry_delay=0.2,
            )
            return stack.enter_context(capture_events(hub_source=source, **settings))

        yield start


def heard(events: CapturedEvents, version: int) -> bool:
    """Wait until the client holds the org's controls at ``version``."""
    link = events.client.enforcer.link

    def holds() -> bool:
        controls = link.snapshot.get("controls")
        return controls is not None and controls.version == version

    return link.wait_until(holds, DEADLINE)


# -- the stream ---------------------------------------------------------------------------------


def test_a_kill_pushed_on_the_stream_refuses_the_next_call(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed
) -> None:
    events = connect()
    assert heard(events, 0)
    assert deploy("before") == "deployed to before"

    kill = control("killed", "agent", "researcher", reason="runaway")
    feed.publish(control_set(kill, version=1))
    assert heard(events, 1)

    with pytest.raises(agentops.AgentKilled, match="runaway"):
        deploy("after")
    assert ran == ["before"]
    status = agentops.controls_status()
    assert (status.source, status.version, status.stale) == ("stream", 1, False)


def test_a_new_client_gets_the_current_controls_from_the_stream_without_fetching_them(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed
) -> None:
    feed.publish(control_set(control("killed"), version=4))

    events = connect()
    assert heard(events, 4)

    with pytest.raises(agentops.AgentKilled):
        deploy("prod")
    assert feed.connections == [None]
    assert feed.polls == []


def test_heartbeats_keep_the_controls_fresh_while_nothing_changes(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed
) -> None:
    feed.heartbeat = 0.1
    events = connect(max_staleness=1.0, on_stale="stop")
    assert heard(events, 0)

    ends = time.monotonic() + 2.5  # more than twice max_staleness, with no change at all
    while time.monotonic() < ends:
        assert deploy("prod") == "deployed to prod"
        status = agentops.controls_status()
        assert status.age is not None
        assert status.age < 1.0
        time.sleep(0.05)
    assert len(feed.events) == 1  # nothing was published: heartbeats alone kept it fresh


def test_a_cut_stream_is_resumed_with_last_event_id_and_nothing_published_meanwhile_is_lost(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed
) -> None:
    events = connect()
    feed.publish(control_set(version=1))
    assert heard(events, 1)
    last_id = str(feed.events[-1][0])

    feed.cut()
    feed.publish(control_set(control("killed"), version=2))  # maybe while nobody listens

    assert heard(events, 2)
    with pytest.raises(agentops.AgentKilled):
        deploy("prod")
    assert feed.wait_for(lambda f: len(f.connections) >= 2, DEADLINE)
    assert feed.connections[:2] == [None, last_id]


def test_event_kinds_this_sdk_does_not_know_are_skipped(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentops_sdk")
    events = connect()
    assert heard(events, 0)

    feed.send("budget", {"name": "monthly", "spent": 12.5})
    feed.publish(control_set(control("killed"), version=1))
    assert heard(events, 1)

    with pytest.raises(agentops.AgentKilled):
        deploy("prod")
    assert caplog.records == []


def test_a_resync_event_fetches_the_controls_again(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed
) -> None:
    events = connect(controls_poll_interval=60.0)
    assert heard(events, 0)
    with feed._changed:
        feed.current = control_set(control("killed"), version=3)  # a change the stream lost

    feed.send("resync")

    assert heard(events, 3)
    assert feed.polls[0][1] == 200
    with pytest.raises(agentops.AgentKilled):
        deploy("prod")


# -- polling when the stream fails --------------------------------------------------------------


def test_when_the_stream_fails_the_controls_are_polled_with_an_etag(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentops_sdk")
    feed.stream_status = 503
    events = connect(controls_poll_interval=0.2)

    assert heard(events, 0)
    assert feed.wait_for(lambda f: len(f.polls) >= 3, DEADLINE)
    etag = feed.current.etag
    assert feed.polls[0] == (None, 200)
    assert feed.polls[1:3] == [(etag, 304), (etag, 304)]
    assert agentops.controls_status().source == "poll"

    feed.publish(control_set(control("killed"), version=1))
    assert heard(events, 1)
    with pytest.raises(agentops.AgentKilled):
        deploy("prod")
    assert len(feed.connections) >= 2  # the stream was tried again meanwhile
    lost = [r.getMessage() for r in caplog.records if "event stream" in r.getMessage()]
    assert len(lost) == 1
    assert "HTTP 503" in lost[0]
    assert "polling for controls every 0.2 s" in lost[0]


def test_the_client_goes_back_to_the_stream_when_it_works_again(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentops_sdk")
    feed.stream_status = 503
    events = connect(controls_poll_interval=0.2)
    assert feed.wait_for(lambda f: len(f.polls) >= 2, DEADLINE)

    feed.stream_status = None
    assert feed.wait_for(lambda f: f.open_streams == 1, DEADLINE)
    polls = len(feed.polls)
    feed.publish(control_set(control("killed"), version=1))
    assert heard(events, 1)

    assert agentops.controls_status().source == "stream"
    assert len(feed.polls) <= polls + 1  # no polling while the stream is held
    assert any("event stream is back" in r.getMessage() for r in caplog.records)


def test_reconnections_back_off_from_1_s_doubling_to_30_s_each_at_a_random_point_below(
    hub: FakeHub,
) -> None:
    source = HubStream(hub.url, KEY)
    assert (source.retry_delay, source.max_retry_delay) == (1.0, 30.0)
    backoff = Backoff(source.retry_delay, source.max_retry_delay)
    random.seed(10)

    delays = [backoff.next() for _ in range(8)]
    backoff.reset()
    after_reset = backoff.next()

    bounds = [1, 2, 4, 8, 16, 30, 30, 30]
    assert all(0 <= delay <= bound for delay, bound in zip(delays, bounds, strict=True))
    assert max(delays) > 16  # the bound grew: one draw below 30 went past 16
    assert len(set(delays)) == len(delays)  # jitter: no two agents wait alike
    assert after_reset <= 1


def test_a_refused_api_key_is_logged_once_as_an_error_however_often_it_is_tried(
    start_hub: Callable[..., FakeHub],
    connect: Callable[..., CapturedEvents],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentops_sdk")
    hub = start_hub(api_key="ak_the_right_one")
    events = connect(hub_url=hub.url, api_key="ak_revoked")

    assert hub.controls.wait_for(
        lambda f: f.refused.count(STREAM_PATH) >= 3 and f.refused.count(CONTROLS_PATH) >= 3,
        DEADLINE,
    )
    assert agentops.controls_status().source == "none"
    events.client.shutdown()

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4  # the stream once, the poll of controls, policies, budgets once each
    assert all("HTTP 401" in r.getMessage() and "invalid_api_key" in r.getMessage() for r in errors)


def test_shutdown_does_not_wait_for_the_next_heartbeat_of_a_held_stream(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed
) -> None:
    events = connect()
    assert feed.wait_for(lambda f: f.open_streams == 1, DEADLINE)
    link = events.client.enforcer.link

    started = time.monotonic()
    events.client.shutdown()

    assert time.monotonic() - started < 0.9  # closing waits up to 1 s for the link's thread
    assert not link.running


# -- the saved copy -----------------------------------------------------------------------------


def test_controls_that_pause_or_kill_are_saved_and_a_set_without_any_removes_the_file(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed, spool_dir: Path, hub: FakeHub
) -> None:
    saved = SavedControls(spool_dir, hub.url, KEY)
    events = connect()
    assert heard(events, 0)
    assert not saved.path.exists()  # nothing paused or killed: nothing written

    kill = control("killed", "team", "growth")
    feed.publish(control_set(kill, version=1))
    assert heard(events, 1)
    loaded = saved.load()
    assert loaded is not None
    assert loaded[0].controls == (kill,)
    assert saved.path.parent == spool_dir
    assert list(spool_dir.iterdir()) == [saved.path]  # atomically: no temporary file left

    feed.publish(control_set(version=2))
    assert heard(events, 2)
    assert not saved.path.exists()


def test_a_heartbeat_renews_the_age_of_the_saved_copy(
    connect: Callable[..., CapturedEvents], feed: ControlsFeed, spool_dir: Path, hub: FakeHub
) -> None:
    saved = SavedControls(spool_dir, hub.url, KEY)
    feed.publish(control_set(control("paused"), version=1))
    feed.heartbeat = 0.05
    events = connect()
    assert heard(events, 1)
    link = events.client.enforcer.link

    def updates_after(version: int, count: int) -> bool:
        return link.wait_until(lambda: link.snapshot.version >= version + count, DEADLINE)

    old = time.time() - 3600
    os.utime(saved.path, (old, old))
    # Two updates after it: the second was surely confirmed (and the file touched) after it.
    assert updates_after(link.snapshot.version, 2)

    assert saved.path.stat().st_mtime > time.time() - 60
    assert len(feed.events) == 2  # no new set came: heartbeats renewed it


RESTARTED_AGENT = """
    import json, sys
    import agentops_sdk as agentops

    ran = []

    @agentops.tool
    def deploy(target):
        ran.append(target)

    client = agentops.init(
        hub_url=sys.argv[1], api_key=sys.argv[2], spool_dir=sys.argv[3], agent="researcher",
        exporter="memory", integrations=[],
    )
    if sys.argv[4] == "listen":  # the first life: hear the kill, then exit
        link = client.enforcer.link
        link.wait_until(lambda: getattr(link.snapshot.get("controls"), "version", 0) == 1, 10)
    outcome = "ran"
    try:
        deploy("prod")
    except agentops.AgentKilled as exc:
        outcome = f"killed: {exc.rule}"
    status = agentops.controls_status()
    print(json.dumps({"outcome": outcome, "ran": ran, "source": status.source,
                      "version": status.version, "age": status.age}))
"""


def test_a_restarted_agent_with_the_hub_down_still_obeys_the_kill_it_saw_before(
    hub: FakeHub, spool_dir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(RESTARTED_AGENT))
    kill = control("killed", "agent", "researcher")
    hub.controls.publish(control_set(kill, version=1))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AGENTOPS_")}

    def life(hub_url: str, mode: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(script), hub_url, KEY, str(spool_dir), mode],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        said: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return said

    first = life(hub.url, "listen")
    hub_url = hub.url
    hub.stop()
    second = life(hub_url, "restart")  # nothing listens there any more

    assert first == {**first, "outcome": f"killed: {kill.id}", "ran": [], "source": "stream"}
    assert second["outcome"] == f"killed: {kill.id}"
    assert second["ran"] == []
    assert (second["source"], second["version"]) == ("disk", 1)
    assert second["age"] >= 0


def test_a_saved_copy_from_another_hub_or_key_is_not_loaded(hub: FakeHub, spool_dir: Path) -> None:
    SavedControls(spool_dir, hub.url, "ak_other").save(control_set(control("killed")))
    down = f"http://127.0.0.1:{free_port()}"
    SavedControls(spool_dir, down, KEY).save(control_set(control("killed")))

    with capture_events(hub_url=hub.url, api_key=KEY, spool_dir=spool_dir) as events:
        assert agentops.controls_status().source != "disk"
        assert heard(events, 0)
        assert deploy("prod") == "deployed to prod"


def test_an_unreadable_saved_copy_is_ignored_with_a_warning(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = SavedControls(spool_dir, f"http://127.0.0.1:{free_port()}", KEY)
    spool_dir.mkdir(parents=True)
    saved.path.write_text("{not json")

    assert saved.load() is None
    assert "ignoring unreadable saved controls" in caplog.text


# -- fork ---------------------------------------------------------------------------------------

FORKED_AGENT = """
    import json, os, sys, time
    import agentops_sdk as agentops

    @agentops.tool
    def deploy(target):
        return target

    client = agentops.init(
        hub_url=sys.argv[1], api_key=sys.argv[2], spool_dir=sys.argv[3], agent="researcher",
        exporter="memory", integrations=[],
    )
    link = client.enforcer.link
    link.wait_until(lambda: link.snapshot.get("controls") is not None, 10)
    pid = os.fork()
    if pid == 0:
        print(json.dumps({"child_running": agentops.get_client().enforcer.link.running}),
              flush=True)
        deadline = time.monotonic() + 20
        outcome = "never killed"
        while time.monotonic() < deadline:
            try:
                deploy("prod")
            except agentops.AgentKilled:
                outcome = "killed"
                break
            time.sleep(0.02)
        print(json.dumps({"child": outcome}), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status}), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_stream_and_hears_the_hub_itself(
    hub: FakeHub, spool_dir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(FORKED_AGENT))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AGENTOPS_")}
    process = subprocess.Popen(
        [sys.executable, str(script), hub.url, KEY, str(spool_dir)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline()) == {"child_running": True}
        assert hub.controls.wait_for(lambda f: len(f.connections) >= 2, DEADLINE)

        hub.controls.publish(control_set(control("killed"), version=1))

        assert json.loads(process.stdout.readline()) == {"child": "killed"}
        assert json.loads(process.stdout.readline()) == {"status": 0}
    finally:
        process.kill()
        process.wait(DEADLINE)
