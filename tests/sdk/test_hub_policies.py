"""The hub's policy set reaches the SDK's policy stage over real HTTP: pushed on the event stream
as a ``policies`` event, polled with an ETag when the stream fails, saved to disk for the next
process, and in force instead of the local policy file while the hub has an active set.

The hub's endpoints are played by :class:`~tests.sdk.fake_controls.ControlsFeed`, served by the
fake hub on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk.contract.policy import EffectivePolicy, parse_policy
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.enforcement.saved import SavedControls, SavedPolicies
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_controls import ORG, ControlsFeed
from tests.sdk.fake_hub import FakeHub, free_port

KEY = "ak_policies"
DEADLINE = 10.0
NO_DELETES = {"id": "no-deletes", "match": {"kind": "tool", "name": "delete_*"}, "outcome": "deny"}
NO_SEARCH = {"id": "no-search", "match": {"kind": "tool", "name": "search"}, "outcome": "deny"}

ran: list[str] = []


@agentops.tool
def delete_user(user_id: str) -> str:
    ran.append(f"delete {user_id}")
    return "deleted"


@agentops.tool
def search(query: str) -> str:
    ran.append(f"search {query}")
    return "found"


@pytest.fixture(autouse=True)
def nothing_ran_yet() -> None:
    ran.clear()


def effective(revision: int, *rules: dict[str, Any]) -> EffectivePolicy:
    """The org's effective set at ``revision``: ``rules`` as its active version, or none."""
    document = {"version": revision, "rules": list(rules)} if rules else None
    return EffectivePolicy(
        org_id=ORG, version=revision, policy=None if document is None else parse_policy(document)
    )


@pytest.fixture
def feed(hub: FakeHub) -> ControlsFeed:
    return hub.controls


@pytest.fixture
def connect(spool_dir: Path) -> Iterator[Callable[..., CapturedEvents]]:
    """``connect(hub_url, **options)``: a client reading the hub's controls and policies."""
    with ExitStack() as stack:

        def start(hub_url: str, **options: Any) -> CapturedEvents:
            source = HubStream(
                hub_url,
                KEY,
                poll_interval=0.2,
                saved=SavedControls(spool_dir, hub_url, KEY),
                saved_policies=SavedPolicies(spool_dir, hub_url, KEY),
                retry_delay=0.05,
                max_retry_delay=0.2,
            )
            settings = {"hub_url": hub_url, "api_key": KEY, "spool_dir": spool_dir} | options
            return stack.enter_context(capture_events(hub_source=source, **settings))

        yield start


def holds(events: CapturedEvents, version: int | None) -> bool:
    """Wait until the client's ``policies`` topic holds the hub's set numbered ``version``
    (None: the hub's word that it has no active set)."""
    link = events.client.enforcer.link

    def held() -> bool:
        snapshot = link.snapshot
        if "policies" not in snapshot.values:
            return False
        compiled = snapshot.get("policies")
        return (compiled is None) if version is None else getattr(compiled, "version", 0) == version

    return link.wait_until(held, DEADLINE)


def stage_names(events: CapturedEvents) -> list[str]:
    """The stages a call passes now (an idle stage is left out of the chain)."""
    return [stage.name for stage in events.client.enforcer.stages]


def test_a_policies_event_on_the_stream_changes_what_the_stage_denies(
    hub: FakeHub, feed: ControlsFeed, connect: Callable[..., CapturedEvents]
) -> None:
    events = connect(hub.url)
    assert delete_user("u1") == "deleted"
    # With no set in force the policy stage is idle, and the approval stage with it (nothing
    # can ask it): calls pass the controls stage alone.
    assert stage_names(events) == ["controls"]

    feed.publish_policies(effective(1, NO_DELETES))
    assert holds(events, 1)
    assert stage_names(events) == ["controls", "policy", "approval"]
    with pytest.raises(agentops.PolicyViolation) as refused:
        delete_user("u2")
    feed.publish_policies(effective(2))
    assert holds(events, None)

    assert delete_user("u3") == "deleted"
    assert stage_names(events) == ["controls"]
    assert ran == ["delete u1", "delete u3"]
    assert refused.value.rule == "no-deletes"
    assert refused.value.decision is not None
    assert refused.value.decision.details["policy_version"] == 1
    assert feed.policy_polls == []  # pushed, never fetched


def test_the_hubs_set_replaces_the_local_file_and_the_file_applies_while_the_hub_has_none(
    hub: FakeHub, feed: ControlsFeed, connect: Callable[..., CapturedEvents], tmp_path: Path
) -> None:
    local = tmp_path / "policy.json"
    local.write_text(json.dumps({"version": "local", "rules": [NO_SEARCH]}))
    events = connect(hub.url, policy_file=local)
    with pytest.raises(agentops.PolicyViolation):
        search("before the hub spoke")

    feed.publish_policies(effective(1, NO_DELETES))
    assert holds(events, 1)
    assert search("under the hub's set") == "found"
    with pytest.raises(agentops.PolicyViolation):
        delete_user("u1")

    feed.publish_policies(effective(2))
    assert holds(events, None)
    with pytest.raises(agentops.PolicyViolation) as refused:
        search("the hub has none")
    assert refused.value.rule == "no-search"
    assert ran == ["search under the hub's set"]


def test_when_the_stream_fails_the_policies_are_polled_with_an_etag(
    hub: FakeHub, feed: ControlsFeed, connect: Callable[..., CapturedEvents]
) -> None:
    feed.stream_status = 503
    with feed._changed:
        feed.policies = effective(3, NO_DELETES)

    events = connect(hub.url)
    assert holds(events, 3)
    assert feed.wait_for(lambda f: len(f.policy_polls) >= 3, DEADLINE)

    etag = effective(3).etag
    assert feed.policy_polls[0] == (None, 200)
    assert feed.policy_polls[1:3] == [(etag, 304), (etag, 304)]
    with pytest.raises(agentops.PolicyViolation):
        delete_user("u1")
    assert ran == []


def test_a_restarted_agent_with_the_hub_down_enforces_the_policies_it_saw_before(
    hub: FakeHub, feed: ControlsFeed, connect: Callable[..., CapturedEvents], spool_dir: Path
) -> None:
    first = connect(hub.url)
    feed.publish_policies(effective(4, NO_DELETES))
    assert holds(first, 4)
    saved = SavedPolicies(spool_dir, hub.url, KEY)
    assert json.loads(saved.path.read_text())["version"] == 4
    first.client.shutdown()
    hub_url = hub.url
    hub.stop()

    second = connect(hub_url)  # nothing listens there any more

    assert second.client.enforcer.link.snapshot.via == "disk"
    with pytest.raises(agentops.PolicyViolation) as refused:
        delete_user("u1")
    assert refused.value.decision is not None
    assert refused.value.decision.details["policy_version"] == 4
    assert ran == []


def test_an_org_without_an_active_set_saves_no_file_and_removes_an_old_one(
    hub: FakeHub, feed: ControlsFeed, connect: Callable[..., CapturedEvents], spool_dir: Path
) -> None:
    events = connect(hub.url)
    saved = SavedPolicies(spool_dir, hub.url, KEY)
    feed.publish_policies(effective(1, NO_DELETES))
    assert holds(events, 1)
    assert saved.path.exists()

    feed.publish_policies(effective(2))
    assert holds(events, None)

    assert not saved.path.exists()


def test_a_saved_set_from_another_hub_is_not_loaded(
    hub: FakeHub, connect: Callable[..., CapturedEvents], spool_dir: Path
) -> None:
    SavedPolicies(spool_dir, hub.url, KEY).save(effective(1, NO_DELETES))
    down = f"http://127.0.0.1:{free_port()}"

    events = connect(down, hub_wait=0)

    assert "policies" not in events.client.enforcer.link.snapshot.values
    assert delete_user("u1") == "deleted"


def test_a_first_start_waits_for_the_hubs_policies_so_the_first_call_is_governed(
    hub: FakeHub, feed: ControlsFeed, connect: Callable[..., CapturedEvents]
) -> None:
    feed.publish_policies(effective(5, NO_DELETES))

    events = connect(hub.url)  # no copy saved by an earlier process: init() waits for the hub

    assert events.client.enforcer.link.snapshot.via == "stream"
    with pytest.raises(agentops.PolicyViolation):
        delete_user("u1")
    assert ran == []


def test_a_first_start_with_the_hub_away_waits_hub_wait_then_warns_and_goes_on(
    connect: Callable[..., CapturedEvents], caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"

    events = connect(nowhere, hub_wait=0.2)

    assert "policies" not in events.client.enforcer.link.snapshot.values
    [warning] = [r for r in caplog.records if "hub_wait" in r.getMessage()]
    assert "no answer from the hub in 0.2 s" in warning.getMessage()
    assert delete_user("u1") == "deleted"  # ungoverned until the hub answers, as warned
