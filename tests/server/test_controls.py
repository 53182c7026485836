"""``/api/v1/controls``: the org's controls as its SDKs read them (ETag, 304), setting, changing
and clearing them one scope or many agents at a time, with audit, notices and the push hook, on
SQLite and PostgreSQL; and the SDK's own reader taking what the hub serves."""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from litestar.testing import TestClient

from agentops_sdk.contract.controls import ControlSet, effective_control
from agentops_sdk.enforcement.controls import TOPIC
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.enforcement.link import Snapshot, Update
from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner
from agentops_server.security.permissions import Role
from agentops_server.services.governance.controls import CONTROL_CHANGED
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, audit_entries, bearer
from tests.server.conftest import make_org
from tests.server.principals import People, Person, limited_key
from tests.server.test_agents import register, set_control, status_of


def control_set(client: Client, headers: dict[str, str]) -> ControlSet:
    """The org's control set as the hub serves it, read by the SDK's parser."""
    response = client.get("/api/v1/controls", headers=headers)
    assert response.status_code == 200, response.text
    served = ControlSet.model_validate_json(response.content)
    assert response.headers["etag"] == served.etag
    return served


class Hooks:
    """What the hub handed to derived work and to the push hook, for a test to wait on."""

    def __init__(self) -> None:
        self.notices: list[Mapping[str, Any]] = []
        self.pushed: list[uuid.UUID] = []
        self.runner = InProcessRunner(backoff=0.01)
        self.runner.register(CONTROL_CHANGED, self._noticed)
        self._changed = threading.Condition()

    async def _noticed(self, payload: Mapping[str, Any]) -> None:
        with self._changed:
            self.notices.append(payload)
            self._changed.notify_all()

    async def push(self, org_id: uuid.UUID) -> None:
        with self._changed:
            self.pushed.append(org_id)
            self._changed.notify_all()

    def wait_for_notices(self, count: int, timeout: float = 10.0) -> list[Mapping[str, Any]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.notices) >= count, timeout)
            return list(self.notices)


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
def hooked(settings: Settings, hooks: Hooks) -> Iterator[Client]:
    """A client of a hub whose notices and pushes ``hooks`` records."""
    app = create_app(settings, derived_work=hooks.runner, controls_changed=hooks.push)
    with TestClient(app) as client:
        yield client


# -- reading ---------------------------------------------------------------------------------------


def test_an_unchanged_poll_answers_304_and_a_change_200_with_a_new_etag(
    client: Client, owner: Person, migrated_url: str, org: IssuedKey
) -> None:
    sdk = bearer(limited_key(migrated_url, org.org_id, scopes=["ingest"]).key)
    first = client.get("/api/v1/controls", headers=sdk)
    etag = first.headers["etag"]

    unchanged = client.get("/api/v1/controls", headers={**sdk, "If-None-Match": etag})
    set_control(client, owner.headers, "agent", "triage", "killed")
    changed = client.get("/api/v1/controls", headers={**sdk, "If-None-Match": etag})

    assert first.status_code == 200, first.text
    assert ControlSet.model_validate_json(first.content).version == 0
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert unchanged.headers["etag"] == etag
    assert changed.status_code == 200
    served = ControlSet.model_validate_json(changed.content)
    assert changed.headers["etag"] == served.etag != etag
    assert served.org_id == org.org_id
    [control] = served.controls
    assert (control.scope.kind, control.scope.value, control.state) == ("agent", "triage", "killed")
    assert control.actor == owner.email


def test_the_sdks_hub_reader_takes_the_hubs_controls_and_confirms_them_by_etag(
    hub_url: str, client: Client, owner: Person, migrated_url: str, org: IssuedKey
) -> None:
    set_control(client, owner.headers, "org", None, "paused", pause_timeout=5)
    key = limited_key(migrated_url, org.org_id, scopes=["ingest"]).key
    reader = HubStream(hub_url, key, poll_interval=0.05, retry_delay=30)
    reader.stream_url = f"{hub_url}/api/v1/no-stream"  # refused (404): the reader polls
    updates: queue.Queue[Update] = queue.Queue()
    stop = threading.Event()

    def read() -> None:
        known = Snapshot(values={}, etags={})
        for update in reader.updates(frozenset({TOPIC}), known, stop):
            updates.put(update)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        first = updates.get(timeout=10)
        confirmed = updates.get(timeout=10)
        set_control(client, owner.headers, "org", None, "killed")
        deadline = time.monotonic() + 10
        latest = confirmed
        while latest.value.version == first.value.version and time.monotonic() < deadline:
            latest = updates.get(timeout=10)
    finally:
        stop.set()
        thread.join(timeout=10)

    assert first.via == "poll"
    [paused] = first.value.controls
    assert (paused.state, paused.pause_timeout) == ("paused", 5.0)
    assert confirmed.value is first.value  # a 304: the same set, confirmed
    [killed] = latest.value.controls
    assert killed.state == "killed"
    assert latest.etag == latest.value.etag


# -- setting ---------------------------------------------------------------------------------------


def test_one_call_stops_every_agent_of_the_org_audited_notified_and_pushed(
    hooked: Client, hooks: Hooks, owner: Person, org: IssuedKey
) -> None:
    register(hooked, owner.headers, "triage")
    register(hooked, owner.headers, "billing", environments=["dev"])
    hooks.pushed.clear()

    control = set_control(hooked, owner.headers, "org", None, "killed")

    assert {status_of(hooked, owner.headers, n) for n in ("triage", "billing")} == {"killed"}
    [entry] = audit_entries(hooked, owner.headers, action="control.set")
    assert entry["before"] is None
    assert entry["after"]["state"] == "killed"
    assert entry["after"]["scope"] == {"kind": "org", "value": None}
    [notice] = hooks.wait_for_notices(1)
    assert notice == {
        "org_id": str(org.org_id),
        "control_ids": [control["id"]],
        "action": "kill",
        "scope": {"kind": "org", "value": None},
        "reason": "test",
        "actor": owner.email,
        "changed_at": notice["changed_at"],
    }
    assert hooks.pushed == [org.org_id]


def test_setting_a_scope_again_changes_its_control_and_resume_lifts_only_that_scope(
    client: Client, owner: Person
) -> None:
    register(client, owner.headers, "triage")
    paused = set_control(client, owner.headers, "agent", "triage", "paused")
    set_control(client, owner.headers, "org", None, "killed")

    resumed = set_control(client, owner.headers, "agent", "triage", "active")

    assert resumed["id"] == paused["id"]
    assert resumed["version"] == 2
    assert status_of(client, owner.headers, "triage") == "killed"  # the org's kill still holds
    org_kill = next(c for c in control_set(client, owner.headers).controls if c.scope.kind == "org")
    client.delete(
        f"/api/v1/controls/{org_kill.id}", params={"reason": "over"}, headers=owner.headers
    )
    assert status_of(client, owner.headers, "triage") == "active"


def test_a_control_is_changed_and_cleared_with_a_reason_each_time_audited(
    hooked: Client, hooks: Hooks, owner: Person
) -> None:
    control = set_control(hooked, owner.headers, "tag", "pii", "paused")
    before = control_set(hooked, owner.headers).version

    changed = hooked.patch(
        f"/api/v1/controls/{control['id']}",
        json={"reason": "worse", "state": "killed", "duration": 60},
        headers=owner.headers,
    )
    no_reason = hooked.delete(f"/api/v1/controls/{control['id']}", headers=owner.headers)
    cleared = hooked.delete(
        f"/api/v1/controls/{control['id']}", params={"reason": "fixed"}, headers=owner.headers
    )

    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["state"], body["reason"], body["version"]) == ("killed", "worse", 2)
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert dt.timedelta(seconds=50) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=60)
    assert no_reason.status_code == 400
    assert cleared.status_code == 204, cleared.text
    after = control_set(hooked, owner.headers)
    assert (after.controls, after.version) == ((), before + 2)
    entries = audit_entries(hooked, owner.headers, action="control.")
    assert [entry["action"] for entry in entries] == [
        "control.cleared",
        "control.changed",
        "control.set",
    ]
    assert entries[0]["after"] == {"reason": "fixed", "actor": owner.email}
    assert (entries[1]["before"]["state"], entries[1]["after"]["state"]) == ("paused", "killed")
    actions = [notice["action"] for notice in hooks.wait_for_notices(3)]
    assert actions == ["pause", "kill", "clear"]


def test_bulk_sets_one_control_per_listed_agent_in_one_version(
    hooked: Client, hooks: Hooks, owner: Person
) -> None:
    before = control_set(hooked, owner.headers).version

    response = hooked.post(
        "/api/v1/controls/bulk",
        json={"agents": ["a", "b", "a"], "state": "paused", "reason": "r", "pause_timeout": 2},
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(c["scope"]["value"], c["state"]) for c in items] == [("a", "paused"), ("b", "paused")]
    served = control_set(hooked, owner.headers)
    assert served.version == before + 1
    assert len(audit_entries(hooked, owner.headers, action="control.set")) == 2
    [notice] = hooks.wait_for_notices(1)
    assert notice["scope"] == [{"kind": "agent", "value": "a"}, {"kind": "agent", "value": "b"}]
    assert notice["control_ids"] == [c["id"] for c in items]


def test_bulk_by_filter_controls_every_agent_the_registry_filter_matches(
    client: Client, owner: Person
) -> None:
    register(client, owner.headers, "support-bot", tags=["support"])
    register(client, owner.headers, "helpdesk", tags=["support"])
    register(client, owner.headers, "billing")

    response = client.post(
        "/api/v1/controls/bulk",
        json={"filter": {"tag": "support"}, "state": "killed", "reason": "r"},
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    assert sorted(c["scope"]["value"] for c in response.json()["items"]) == [
        "helpdesk",
        "support-bot",
    ]
    assert status_of(client, owner.headers, "billing") == "active"
    assert status_of(client, owner.headers, "helpdesk") == "killed"


def test_bulk_by_status_kills_the_agents_already_paused(client: Client, owner: Person) -> None:
    register(client, owner.headers, "looping")
    register(client, owner.headers, "fine")
    set_control(client, owner.headers, "agent", "looping", "paused")

    response = client.post(
        "/api/v1/controls/bulk",
        json={"filter": {"status": "paused"}, "state": "killed", "reason": "r"},
        headers=owner.headers,
    )

    assert [c["scope"]["value"] for c in response.json()["items"]] == ["looping"]
    assert (
        status_of(client, owner.headers, "looping"),
        status_of(client, owner.headers, "fine"),
    ) == (
        "killed",
        "active",
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"scope": {"kind": "org", "value": "x"}, "state": "killed", "reason": "r"},
            "invalid_scope",
        ),
        ({"scope": {"kind": "agent"}, "state": "killed", "reason": "r"}, "invalid_scope"),
        (
            {"scope": {"kind": "environment", "value": "moon"}, "state": "killed", "reason": "r"},
            "invalid_scope",
        ),
        (
            {"scope": {"kind": "run", "value": "not-a-uuid"}, "state": "killed", "reason": "r"},
            "invalid_scope",
        ),
        ({"scope": {"kind": "org"}, "state": "killed", "reason": "  "}, "invalid_reason"),
        ({"scope": {"kind": "org"}, "state": "killed"}, "validation_error"),
        ({"scope": {"kind": "org"}, "state": "gone", "reason": "r"}, "validation_error"),
        (
            {
                "scope": {"kind": "org"},
                "state": "paused",
                "reason": "r",
                "duration": 60,
                "expires_at": "2030-01-01T00:00:00Z",
            },
            "invalid_expiry",
        ),
        (
            {"scope": {"kind": "team", "value": "nobody"}, "state": "killed", "reason": "r"},
            "team_not_found",
        ),
    ],
)
def test_a_malformed_control_is_refused_and_changes_nothing(
    client: Client, owner: Person, body: dict[str, Any], code: str
) -> None:
    response = client.post("/api/v1/controls", json=body, headers=owner.headers)

    assert response.json()["code"] == code, response.text
    assert control_set(client, owner.headers).version == 0


def test_bulk_needs_a_list_or_a_filter_not_both(client: Client, owner: Person) -> None:
    for selection in ({}, {"agents": ["a"], "filter": {}}):
        response = client.post(
            "/api/v1/controls/bulk",
            json={**selection, "state": "killed", "reason": "r"},
            headers=owner.headers,
        )
        assert_problem(response, 400, "invalid_selection")


# -- who may ---------------------------------------------------------------------------------------


def test_a_team_lead_controls_their_teams_agents_and_runs_only(
    client: Client, owner: Person, people: People
) -> None:
    lead = people.add(Role.TEAM_LEAD)
    mine = people.team("platform", lead)
    theirs = people.team("research")
    register(client, owner.headers, "ours", team_id=str(mine))
    register(client, owner.headers, "others", team_id=str(theirs))
    register(client, owner.headers, "nobodys")

    def attempt(kind: str, value: str | None) -> int:
        body = {"scope": {"kind": kind, "value": value}, "state": "paused", "reason": "r"}
        response = client.post("/api/v1/controls", json=body, headers=lead.headers)
        if response.status_code != 200:
            assert_problem(response, 403, "not_your_team")
        return int(response.status_code)

    allowed = {(k, v): attempt(k, v) for k, v in [("team", "platform"), ("agent", "ours")]}
    refused = {
        (k, v): attempt(k, v)
        for k, v in [
            ("team", "research"),
            ("agent", "others"),
            ("agent", "nobodys"),
            ("org", None),
            ("tag", "pii"),
            ("environment", "prod"),
        ]
    }
    others = client.post(
        "/api/v1/controls/bulk",
        json={"filter": {}, "state": "killed", "reason": "r"},
        headers=lead.headers,
    )

    assert set(allowed.values()) == {200}
    assert set(refused.values()) == {403}
    assert_problem(others, 403, "not_your_team")
    assert status_of(client, owner.headers, "others") == "active"


def test_a_member_reads_controls_but_sets_none(client: Client, people: People) -> None:
    member = people.add(Role.MEMBER)

    assert client.get("/api/v1/controls", headers=member.headers).status_code == 200
    body = {"scope": {"kind": "org"}, "state": "killed", "reason": "r"}
    refused = client.post("/api/v1/controls", json=body, headers=member.headers)
    assert_problem(refused, 403, "permission_denied")


def test_an_orgs_controls_never_reach_another_org(
    client: Client, owner: Person, migrated_url: str
) -> None:
    control = set_control(client, owner.headers, "org", None, "killed")
    other = make_org(migrated_url, "globex")
    theirs = bearer(other.key)

    served = control_set(client, theirs)
    changed = client.patch(
        f"/api/v1/controls/{control['id']}", json={"reason": "x"}, headers=theirs
    )
    cleared = client.delete(
        f"/api/v1/controls/{control['id']}", params={"reason": "x"}, headers=theirs
    )

    assert (served.org_id, served.controls, served.version) == (other.org_id, (), 0)
    assert_problem(changed, 404, "control_not_found")
    assert_problem(cleared, 404, "control_not_found")
    assert control_set(client, owner.headers).controls[0].state == "killed"


def test_a_timed_pause_stops_applying_once_it_expires(client: Client, owner: Person) -> None:
    set_control(client, owner.headers, "agent", "triage", "paused", duration=30)

    [control] = control_set(client, owner.headers).controls
    facts: dict[str, Any] = {
        "agent": "triage",
        "environment": "prod",
        "tags": (),
        "run_id": None,
        "profile": None,
    }

    assert control.expires_at is not None
    assert effective_control([control], now=dt.datetime.now(dt.UTC), **facts) == control
    later = control.expires_at + dt.timedelta(seconds=1)
    assert effective_control([control], now=later, **facts) is None
