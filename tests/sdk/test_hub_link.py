"""The hub link: the SDK hears the hub on its own thread; stages read its snapshot, lock-free."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

import pytest

import agentops_sdk as agentops
from agentops_sdk.contract.decisions import Decision, StageName
from agentops_sdk.enforcement import CallInfo, HubLink, LocalHub, Snapshot, Stage, Wait
from agentops_sdk.enforcement.link import HubSource, Update
from agentops_sdk.testing import CapturedEvents, capture_events

HUB_URL = "http://hub.invalid"
DEADLINE = 5.0


class KillSwitch(Stage):
    """Refuses every call while the hub says ``controls`` is ``"killed"``."""

    name: ClassVar[StageName] = "controls"
    error = agentops.AgentKilled
    topics = frozenset({"controls"})

    def __init__(self, link: HubLink) -> None:
        self.link = link

    def before(self, call: CallInfo) -> Decision | None:
        if self.link.snapshot.get("controls") == "killed":
            return Decision("deny", rule="kill-1", reason="the agent is killed")
        return None


class HubApproval(Stage):
    """Makes each call wait until the hub's ``approvals`` name it approved or rejected."""

    name: ClassVar[StageName] = "approval"
    error = agentops.ApprovalDenied
    topics = frozenset({"approvals"})

    def __init__(self, link: HubLink) -> None:
        self.link = link

    def before(self, call: CallInfo) -> Wait:
        def answered(snapshot: Snapshot) -> Decision | None:
            answer = snapshot.get("approvals", {}).get(call.name)
            if answer is None:
                return None
            return Decision("allow" if answer == "approved" else "deny", rule=f"ask-{call.name}")

        return Wait(self.link.watch(answered))


@agentops.tool
def deploy(target: str) -> str:
    return f"deployed to {target}"


@pytest.fixture
def hub() -> LocalHub:
    return LocalHub()


@pytest.fixture
def linked(hub: LocalHub) -> Any:
    """A client with a hub URL whose link reads ``hub``."""
    with capture_events(hub_url=HUB_URL, hub_source=hub) as events:
        yield events


# -- when the link runs -------------------------------------------------------------------------


def test_the_link_runs_only_with_a_hub_url_a_source_and_a_stage_that_reads_the_hub(
    hub: LocalHub,
) -> None:
    with capture_events(hub_source=hub) as no_url:
        no_url.client.enforcer.install(KillSwitch(no_url.client.enforcer.link))
        assert not no_url.client.enforcer.link.running
    with capture_events(hub_url=HUB_URL) as no_source:
        no_source.client.enforcer.install(KillSwitch(no_source.client.enforcer.link))
        assert not no_source.client.enforcer.link.running
    with capture_events(hub_url=HUB_URL, hub_source=hub) as linked:
        link = linked.client.enforcer.link
        linked.client.guards.add(lambda call: None)
        assert not link.running  # nothing reads the hub yet

        linked.client.enforcer.install(KillSwitch(link))

        assert link.running
        assert link.topics == {"controls"}
    assert not link.running  # shutting the client down stopped it
    assert hub.connections == 1


def test_a_stage_reading_more_topics_restarts_the_source_with_all_of_them(
    linked: CapturedEvents, hub: LocalHub
) -> None:
    link = linked.client.enforcer.link
    linked.client.enforcer.install(KillSwitch(link))
    linked.client.enforcer.install(HubApproval(link))
    hub.publish("approvals", {"deploy": "approved"})

    assert link.wait_until(lambda: link.snapshot.get("approvals") is not None, DEADLINE)
    assert link.topics == {"controls", "approvals"}
    assert link.snapshot.get("approvals") == {"deploy": "approved"}


def test_stages_installed_in_a_batch_open_one_connection_with_all_their_topics(
    hub: LocalHub,
) -> None:
    with capture_events(hub_url=HUB_URL, hub_source=hub) as captured:
        enforcer = captured.client.enforcer
        link = enforcer.link
        with link.batched():
            enforcer.install(KillSwitch(link))
            enforcer.install(HubApproval(link))
            assert not link.running  # not before the batch ends
        hub.publish("approvals", {"deploy": "approved"})

        assert link.wait_until(lambda: link.snapshot.get("approvals") is not None, DEADLINE)
        assert link.topics == {"controls", "approvals"}
    assert hub.connections == 1


class SlowToStart(HubSource):
    """A source whose first ``updates`` spends a while setting up, deaf to ``stop`` meanwhile,
    as building an HTTP client (loading certificates in OpenSSL) is; it is let go a moment
    after the link is closed. Later ones end when told to stop."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0
        self.finished = 0
        self._count = threading.Condition()

    def wait_started(self, count: int) -> bool:
        with self._count:
            return self._count.wait_for(lambda: self.started >= count, DEADLINE)

    def updates(
        self, topics: frozenset[str], known: Snapshot, stop: threading.Event
    ) -> Iterator[Update]:
        with self._count:
            self.started += 1
            first = self.started == 1
            self._count.notify_all()
        (self.release if first else stop).wait(DEADLINE)
        with self._count:
            self.finished += 1
        return iter(())

    def interrupt(self) -> None:
        threading.Timer(0.2, self.release.set).start()


def test_closing_the_link_waits_for_the_threads_its_restarts_retired_too() -> None:
    # A thread left running at exit while it built its HTTP client crashed the process in
    # OpenSSL's exit cleanup: close() waits for every thread it started, not only the last.
    source = SlowToStart()
    link = HubLink(source)
    link.require(frozenset({"controls"}))
    link.require(frozenset({"approvals"}))  # a restart: the first thread is retired, still busy
    assert source.wait_started(2)

    link.close(timeout=DEADLINE)

    assert source.finished == 2
    assert [t for t in threading.enumerate() if t.name == "agentops-hub-link"] == []


# -- what stages read ---------------------------------------------------------------------------


def test_a_change_on_the_hub_reaches_the_stage_for_the_next_call(
    linked: CapturedEvents, hub: LocalHub
) -> None:
    link = linked.client.enforcer.link
    linked.client.enforcer.install(KillSwitch(link))
    assert deploy("prod") == "deployed to prod"

    etag = hub.publish("controls", "killed")
    assert link.wait_until(lambda: link.snapshot.get("controls") == "killed", DEADLINE)
    with pytest.raises(agentops.AgentKilled, match="the agent is killed"):
        deploy("prod")

    hub.publish("controls", "active")
    assert link.wait_until(lambda: link.snapshot.get("controls") == "active", DEADLINE)
    assert deploy("prod") == "deployed to prod"
    assert [span.status for span in linked.spans] == ["ok", "blocked", "ok"]
    assert link.snapshot.etags["controls"] != etag


def test_readers_in_many_threads_see_whole_snapshots_while_the_link_swaps_them(
    linked: CapturedEvents, hub: LocalHub
) -> None:
    link = linked.client.enforcer.link
    linked.client.enforcer.install(KillSwitch(link))
    updates = 300
    problems: list[str] = []
    seen: list[int] = []
    done = threading.Event()

    final = (updates, str(updates))

    def read() -> None:
        # Until the reader has seen the last update (however the machine schedules it), or
        # the test gives up.
        last = 0
        while not done.is_set():
            snapshot = link.snapshot  # one read; the object never changes afterwards
            state = snapshot.get("controls")
            if state == final:
                last = snapshot.version
                break
            if state is not None:
                number, text = state
                if text != str(number):
                    problems.append(f"torn value {state!r}")
                if snapshot.version < last:
                    problems.append(f"version went back from {last} to {snapshot.version}")
                last = snapshot.version
            try:
                snapshot.values["controls"] = (-1, "x")  # type: ignore[index]
                problems.append("a snapshot could be changed")
            except TypeError:
                pass
        seen.append(last)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for number in range(1, updates + 1):
        hub.publish("controls", (number, str(number)))
        if number % 50 == 0:  # let the link catch up now and then, so readers see it move
            value = (number, str(number))
            assert link.wait_until(lambda v=value: link.snapshot.get("controls") == v, DEADLINE)
    for reader in readers:
        reader.join(DEADLINE)
    done.set()

    assert problems == []
    assert link.snapshot.get("controls") == final
    assert len(seen) == 4, "every reader saw the last update"
    assert all(version > 0 for version in seen)


# -- waiting on the hub ---------------------------------------------------------------------------


def test_a_sync_call_waits_until_the_hub_answers_then_runs(
    linked: CapturedEvents, hub: LocalHub
) -> None:
    link = linked.client.enforcer.link
    linked.client.enforcer.install(HubApproval(link))
    outcome: list[str] = []
    caller = threading.Thread(target=lambda: outcome.append(deploy("prod")))
    caller.start()
    assert link.wait_until(lambda: link.waiting == 1, DEADLINE)  # the call asked, and waits
    assert outcome == []

    hub.publish("approvals", {"deploy": "approved"})
    caller.join(DEADLINE)

    assert outcome == ["deployed to prod"]
    (decision,) = linked.span("deploy").decisions
    assert (decision.outcome, decision.stage, decision.rule) == ("allow", "approval", "ask-deploy")


async def test_an_async_call_waiting_on_the_hub_is_refused_when_the_hub_says_no(
    linked: CapturedEvents, hub: LocalHub
) -> None:
    link = linked.client.enforcer.link
    linked.client.enforcer.install(HubApproval(link))
    hub.publish("approvals", {"adeploy": "rejected"})

    @agentops.tool
    async def adeploy(target: str) -> str:
        raise AssertionError("never runs")

    with pytest.raises(agentops.ApprovalDenied):
        await adeploy("prod")  # answered at once if the link already has the answer, else soon


def test_a_question_nobody_waits_for_any_more_is_dropped_at_the_next_update(
    linked: CapturedEvents, hub: LocalHub
) -> None:
    link = linked.client.enforcer.link
    linked.client.enforcer.install(KillSwitch(link))
    asked: Future[Decision] = link.watch(lambda snapshot: None)
    assert link.waiting == 1

    asked.cancel()
    hub.publish("controls", "active")

    assert link.wait_until(lambda: link.waiting == 0, DEADLINE)


# -- when the hub goes away -----------------------------------------------------------------------


def test_the_link_keeps_the_last_state_while_the_hub_is_away_and_reconnects(
    linked: CapturedEvents, hub: LocalHub, caplog: pytest.LogCaptureFixture
) -> None:
    link = linked.client.enforcer.link
    linked.client.enforcer.install(KillSwitch(link))
    hub.publish("controls", "killed")
    assert link.wait_until(lambda: link.snapshot.get("controls") == "killed", DEADLINE)

    with caplog.at_level(logging.ERROR, logger="agentops_sdk"):
        hub.fail(times=2)
        deadline = time.monotonic() + 3 * DEADLINE  # two retries, up to 1 s and 2 s apart
        while hub.connections < 3 and time.monotonic() < deadline:
            with pytest.raises(agentops.AgentKilled):  # the hub's last word still holds
                deploy("prod")
            link.wait_until(lambda: hub.connections >= 3, 0.05)
        hub.publish("controls", "active")
        assert link.wait_until(lambda: link.snapshot.get("controls") == "active", DEADLINE)

    assert hub.connections == 3
    assert deploy("prod") == "deployed to prod"
    logged = [r for r in caplog.records if "lost the hub" in r.getMessage()]
    assert len(logged) == 1  # two failures in a row, one line


# -- fork -----------------------------------------------------------------------------------------

FORK = """
    import json, os
    import agentops_sdk as agentops
    from agentops_sdk.enforcement import LocalHub, Stage
    from agentops_sdk.testing import capture_events

    agentops.init(exporter="memory", spool=False)  # installs the fork hook

    class Reader(Stage):
        name = "controls"
        topics = frozenset({"controls"})

    hub = LocalHub()
    with capture_events(hub_url="http://hub.invalid", hub_source=hub) as events:
        link = events.client.enforcer.link
        events.client.enforcer.install(Reader())
        hub.publish("controls", "before the fork")
        assert link.wait_until(lambda: link.snapshot.get("controls") == "before the fork", 5)
        pid = os.fork()
        if pid == 0:
            inherited = link.snapshot.get("controls")
            hub.publish("controls", "in the child")
            link.wait_until(lambda: link.snapshot.get("controls") != inherited, 5)
            heard = link.snapshot.get("controls")
            print(json.dumps({"inherited": inherited, "child_heard": heard,
                              "child_running": link.running}), flush=True)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        hub.publish("controls", "in the parent")
        link.wait_until(lambda: link.snapshot.get("controls") == "in the parent", 5)
        heard = link.snapshot.get("controls")
        print(json.dumps({"status": status, "parent_heard": heard}), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_its_own_link_and_keeps_the_state_it_inherited(
    tmp_path: Path,
) -> None:
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(FORK))
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    said: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        said |= json.loads(line)
    assert said == {
        "inherited": "before the fork",
        "child_heard": "in the child",
        "child_running": True,
        "status": 0,
        "parent_heard": "in the parent",
    }
