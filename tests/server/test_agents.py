"""The agent registry, ``/api/v1/agents``: reading what ingest registered, creating, editing,
filtering and archiving agents, their status, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentops_sdk.contract.controls import AgentProfile, ControlSet
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, audit_entries, bearer
from tests.server.conftest import make_org
from tests.server.ingest_events import T0, batch, run_event
from tests.server.principals import People, Person, limited_key
from tests.server.reading import seeded

DAY = dt.timedelta(days=1)

UNKNOWN_ID = "0190c0de-0000-7000-8000-00000000abcd"
"""An id no row has (fixed, so every pytest-xdist worker collects the same tests)."""


def seen(agent: dict[str, Any]) -> tuple[Any, ...]:
    """What ingest tells of an agent: id, name, first and last seen, run count."""
    return tuple(agent[k] for k in ("id", "name", "first_seen_at", "last_seen_at", "run_count"))


def test_agents_are_listed_by_name_with_first_and_last_seen_and_run_counts(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        triage = rows.agent("triage", first_seen_at=T0, last_seen_at=T0 + 2 * DAY)
        billing = rows.agent("billing", first_seen_at=T0 + DAY, last_seen_at=T0 + DAY)
        idle = rows.agent("archivist", first_seen_at=T0, last_seen_at=T0)
        for day in range(3):
            rows.run(agent="triage", started_at=T0 + day * DAY)
        rows.run(agent="billing", started_at=T0 + DAY)

    response = client.get("/api/v1/agents", headers=auth)

    assert response.status_code == 200, response.text
    assert [seen(item) for item in response.json()["items"]] == [
        (str(idle.id), "archivist", "2026-11-01T12:00:00Z", "2026-11-01T12:00:00Z", 0),
        (str(billing.id), "billing", "2026-11-02T12:00:00Z", "2026-11-02T12:00:00Z", 1),
        (str(triage.id), "triage", "2026-11-01T12:00:00Z", "2026-11-03T12:00:00Z", 3),
    ]


def test_one_agent_has_its_first_and_last_seen_and_run_count(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        agent = rows.agent("triage", first_seen_at=T0, last_seen_at=T0 + DAY)
        rows.run(agent="triage", started_at=T0)
        rows.run(agent="triage", started_at=T0 + DAY)
        rows.run(agent="billing", started_at=T0)

    response = client.get(f"/api/v1/agents/{agent.id}", headers=auth)

    assert response.status_code == 200, response.text
    assert seen(response.json()) == (
        str(agent.id),
        "triage",
        "2026-11-01T12:00:00Z",
        "2026-11-02T12:00:00Z",
        2,
    )
    assert response.json()["status"] == "active"


def test_an_org_without_agents_lists_none(client: Client, auth: dict[str, str]) -> None:
    assert client.get("/api/v1/agents", headers=auth).json() == {"items": []}


@pytest.mark.parametrize("agent_id", [UNKNOWN_ID, "not-a-uuid"])
def test_unknown_agent_is_agent_not_found(
    client: Client, auth: dict[str, str], agent_id: str
) -> None:
    response = client.get(f"/api/v1/agents/{agent_id}", headers=auth)

    assert_problem(response, 404, "agent_not_found")


def test_another_orgs_key_cannot_list_or_fetch_agents_or_count_their_runs(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    other = make_org(migrated_url, "globex")
    other_auth = bearer(other.key)
    with seeded(migrated_url, org.org_id) as rows:
        ours = rows.agent("triage", first_seen_at=T0, last_seen_at=T0)
        rows.run(agent="triage")
    with seeded(migrated_url, other.org_id) as rows:
        theirs = rows.agent("triage", first_seen_at=T0, last_seen_at=T0)
        for minute in range(2):
            rows.run(agent="triage", started_at=T0 + dt.timedelta(minutes=minute))

    listed = client.get("/api/v1/agents", headers=other_auth).json()["items"]

    assert [(a["id"], a["run_count"]) for a in listed] == [(str(theirs.id), 2)]
    response = client.get(f"/api/v1/agents/{ours.id}", headers=other_auth)
    assert_problem(response, 404, "agent_not_found")
    assert client.get(f"/api/v1/agents/{ours.id}", headers=auth).json()["run_count"] == 1


@pytest.mark.parametrize("path", ["/api/v1/agents", f"/api/v1/agents/{UNKNOWN_ID}"])
def test_a_key_without_the_read_scope_is_refused(
    client: Client, migrated_url: str, org: IssuedKey, path: str
) -> None:
    ingest_only = limited_key(migrated_url, org.org_id, scopes=["ingest"])

    response = client.get(path, headers=bearer(ingest_only.key))

    assert_problem(response, 403, "insufficient_scope")


def test_openapi_schema_describes_the_agent_responses(client: Client) -> None:
    schema = client.get("/schema/openapi.json").json()

    assert {"/api/v1/agents", "/api/v1/agents/{agent_id}"} <= set(schema["paths"])
    summary = schema["components"]["schemas"]["AgentSummary"]
    assert {"id", "name", "tags", "environments", "status", "runs_outside_environments"} <= set(
        summary["properties"]
    )


# -- the registry ----------------------------------------------------------------------------------


def register(client: Client, headers: dict[str, str], name: str, **fields: Any) -> dict[str, Any]:
    """Create the agent ``name`` through the API; its summary."""
    response = client.post("/api/v1/agents", json={"name": name, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def names(client: Client, headers: dict[str, str], **filters: Any) -> list[str]:
    """The names ``GET /api/v1/agents`` lists with ``filters``."""
    response = client.get("/api/v1/agents", params=filters, headers=headers)
    assert response.status_code == 200, response.text
    return [agent["name"] for agent in response.json()["items"]]


def test_an_agent_is_created_edited_and_archived_and_each_step_is_audited(
    client: Client, owner: Person
) -> None:
    created = register(
        client,
        owner.headers,
        "triage",
        description="Sorts tickets",
        tags=["support", "support", "tier-1"],
        environments=["prod"],
        owner_id=str(owner.user_id),
        metadata={"repo": "acme/triage"},
    )
    edited = client.patch(
        f"/api/v1/agents/{created['id']}",
        json={"tags": ["support"], "description": "Sorts every ticket"},
        headers=owner.headers,
    )
    archived = client.delete(f"/api/v1/agents/{created['id']}", headers=owner.headers)

    assert created["tags"] == ["support", "tier-1"]
    assert (created["status"], created["first_seen_at"], created["run_count"]) == (
        "active",
        None,
        0,
    )
    assert created["owner_id"] == str(owner.user_id)
    assert created["metadata"] == {"repo": "acme/triage"}
    assert edited.status_code == 200, edited.text
    assert (edited.json()["tags"], edited.json()["description"]) == (
        ["support"],
        "Sorts every ticket",
    )
    assert archived.status_code == 204, archived.text
    assert names(client, owner.headers) == []
    assert names(client, owner.headers, status="archived") == ["triage"]
    fetched = client.get(f"/api/v1/agents/{created['id']}", headers=owner.headers).json()
    assert fetched["status"] == "archived"
    entries = audit_entries(client, owner.headers, action="agent.")
    assert [entry["action"] for entry in entries] == [
        "agent.archived",
        "agent.updated",
        "agent.created",
    ]
    assert entries[1]["before"] == {
        "description": "Sorts tickets",
        "tags": ["support", "tier-1"],
    }
    assert entries[1]["after"] == {"description": "Sorts every ticket", "tags": ["support"]}


def test_an_archived_agent_is_restored_by_patching_archived_false(
    client: Client, owner: Person
) -> None:
    agent = register(client, owner.headers, "triage")
    client.delete(f"/api/v1/agents/{agent['id']}", headers=owner.headers)

    restored = client.patch(
        f"/api/v1/agents/{agent['id']}", json={"archived": False}, headers=owner.headers
    )

    assert (restored.json()["status"], restored.json()["archived_at"]) == ("active", None)
    assert names(client, owner.headers) == ["triage"]


def test_a_name_is_registered_once(client: Client, owner: Person) -> None:
    register(client, owner.headers, "triage")

    again = client.post("/api/v1/agents", json={"name": "triage"}, headers=owner.headers)

    assert_problem(again, 409, "agent_name_taken")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": " "}, "invalid_agent_name"),
        ({"name": "x" * 257}, "invalid_agent_name"),
        ({"name": "a", "tags": [""]}, "invalid_tag"),
        ({"name": "a", "description": "d" * 2001}, "invalid_description"),
        ({"name": "a", "environments": ["moon"]}, "validation_error"),
        ({"name": "a", "team_id": UNKNOWN_ID}, "team_not_found"),
        ({"name": "a", "owner_id": UNKNOWN_ID}, "member_not_found"),
    ],
)
def test_a_profile_out_of_bounds_is_refused(
    client: Client, owner: Person, fields: dict[str, Any], code: str
) -> None:
    response = client.post("/api/v1/agents", json=fields, headers=owner.headers)

    assert response.status_code in {400, 404}
    assert response.json()["code"] == code


def test_a_registered_agent_gets_its_first_and_last_seen_times_from_its_first_run(
    client: Client, owner: Person, auth: dict[str, str]
) -> None:
    agent = register(client, owner.headers, "triage", tags=["support"])
    run = run_event(agent="triage")

    assert client.post("/api/v1/ingest/batch", json=batch(run), headers=auth).status_code == 200

    fetched = client.get(f"/api/v1/agents/{agent['id']}", headers=owner.headers).json()
    assert fetched["first_seen_at"] is not None
    assert (fetched["run_count"], fetched["tags"]) == (1, ["support"])


def test_agents_are_filtered_by_tag_team_environment_and_last_seen(
    client: Client, owner: Person, people: People, migrated_url: str, org: IssuedKey
) -> None:
    platform = people.team("platform")
    with seeded(migrated_url, org.org_id) as rows:
        rows.agent("old", first_seen_at=T0, last_seen_at=T0)
        rows.agent("recent", first_seen_at=T0, last_seen_at=T0 + 2 * DAY)
    register(client, owner.headers, "tagged", tags=["support"], environments=["dev"])
    register(client, owner.headers, "teamed", team_id=str(platform), environments=["prod"])

    assert names(client, owner.headers, tag="support") == ["tagged"]
    assert names(client, owner.headers, team_id=str(platform)) == ["teamed"]
    assert names(client, owner.headers, environment="prod") == ["old", "recent", "teamed"]
    after = (T0 + DAY).isoformat()
    assert names(client, owner.headers, last_seen_after=after) == ["recent"]
    assert names(client, owner.headers, last_seen_before=after) == ["old"]


def test_runs_from_environments_an_agent_is_not_enabled_for_are_counted(
    client: Client, owner: Person, migrated_url: str, org: IssuedKey
) -> None:
    agent = register(client, owner.headers, "triage", environments=["prod", "staging"])
    with seeded(migrated_url, org.org_id) as rows:
        for environment in ("prod", "staging", "dev", "dev"):
            rows.run(agent="triage", environment=environment)

    fetched = client.get(f"/api/v1/agents/{agent['id']}", headers=owner.headers).json()

    assert (fetched["run_count"], fetched["runs_outside_environments"]) == (4, 2)


def test_an_agents_status_is_its_effective_control_and_an_expired_one_no_longer_counts(
    client: Client, owner: Person, people: People
) -> None:
    platform = people.team("platform")
    register(client, owner.headers, "teamed", team_id=str(platform))
    register(client, owner.headers, "tagged", tags=["pii"])
    register(client, owner.headers, "prod-only", environments=["prod"])
    register(client, owner.headers, "anywhere")
    register(client, owner.headers, "expired")
    for kind, value, state in [
        ("team", "platform", "killed"),
        ("tag", "pii", "paused"),
        ("environment", "prod", "killed"),
    ]:
        set_control(client, owner.headers, kind, value, state)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    set_control(client, owner.headers, "agent", "expired", "killed", expires_at=past)

    listed = client.get("/api/v1/agents", headers=owner.headers).json()["items"]

    status = {agent["name"]: agent["status"] for agent in listed}
    assert status == {
        "anywhere": "active",
        "expired": "active",
        "prod-only": "killed",
        "tagged": "paused",
        "teamed": "killed",
    }
    by_name = {agent["name"]: agent for agent in listed}
    assert (by_name["tagged"]["control"]["scope_kind"], by_name["anywhere"]["control"]) == (
        "tag",
        None,
    )
    assert names(client, owner.headers, status="killed") == ["prod-only", "teamed"]
    assert names(client, owner.headers, status="paused") == ["tagged"]


def test_a_profile_change_the_sdks_read_changes_the_control_etag_and_a_description_does_not(
    client: Client, owner: Person, auth: dict[str, str]
) -> None:
    agent = register(client, owner.headers, "triage")
    first = client.get("/api/v1/controls", headers=auth).headers["etag"]

    client.patch(f"/api/v1/agents/{agent['id']}", json={"description": "x"}, headers=owner.headers)
    unchanged = client.get("/api/v1/controls", headers=auth).headers["etag"]
    client.patch(f"/api/v1/agents/{agent['id']}", json={"tags": ["pii"]}, headers=owner.headers)
    served = client.get("/api/v1/controls", headers=auth)

    assert unchanged == first
    assert served.headers["etag"] != first
    assert ControlSet.model_validate_json(served.content).profile("triage") == AgentProfile(
        name="triage", tags=("pii",)
    )


def test_below_admin_a_person_edits_only_agents_of_their_teams_or_of_none(
    client: Client, owner: Person, people: People
) -> None:
    lead = people.add(Role.TEAM_LEAD)
    mine = people.team("platform", lead)
    theirs = people.team("research")
    other = register(client, owner.headers, "other", team_id=str(theirs))

    own = client.post(
        "/api/v1/agents", json={"name": "own", "team_id": str(mine)}, headers=lead.headers
    )
    foreign = client.post(
        "/api/v1/agents", json={"name": "x", "team_id": str(theirs)}, headers=lead.headers
    )
    tagged = client.patch(
        f"/api/v1/agents/{other['id']}", json={"tags": ["mine"]}, headers=lead.headers
    )
    archived = client.delete(f"/api/v1/agents/{other['id']}", headers=lead.headers)

    assert own.status_code == 201, own.text
    assert_problem(foreign, 403, "not_your_team")
    assert_problem(tagged, 403, "not_your_team")
    assert_problem(archived, 403, "not_your_team")
    assert names(client, owner.headers) == ["other", "own"]


def test_a_viewer_reads_agents_but_changes_none(client: Client, people: People) -> None:
    viewer = people.add(Role.VIEWER)

    assert client.get("/api/v1/agents", headers=viewer.headers).status_code == 200
    refused = client.post("/api/v1/agents", json={"name": "x"}, headers=viewer.headers)
    assert_problem(refused, 403, "permission_denied")


def set_control(
    client: Client, headers: dict[str, str], kind: str, value: str | None, state: str, **fields: Any
) -> dict[str, Any]:
    """Set the control of a scope through the API; the control."""
    body = {"scope": {"kind": kind, "value": value}, "state": state, "reason": "test", **fields}
    response = client.post("/api/v1/controls", json=body, headers=headers)
    assert response.status_code == 200, response.text
    control: dict[str, Any] = response.json()
    return control


def test_renaming_a_team_reaches_the_profiles_and_moves_its_controls_along(
    client: Client, owner: Person, people: People, auth: dict[str, str]
) -> None:
    platform = people.team("platform")
    register(client, owner.headers, "triage", team_id=str(platform))
    set_control(client, owner.headers, "team", "platform", "killed")
    before = client.get("/api/v1/controls", headers=auth).headers["etag"]

    renamed = client.patch(
        f"/api/v1/teams/{platform}", json={"name": "infra"}, headers=owner.headers
    )

    assert renamed.status_code == 200, renamed.text
    served = client.get("/api/v1/controls", headers=auth)
    assert served.headers["etag"] != before
    profile = ControlSet.model_validate_json(served.content).profile("triage")
    assert profile is not None
    assert profile.team == "infra"
    [control] = ControlSet.model_validate_json(served.content).controls
    assert (control.scope.value, control.version) == ("infra", 2)
    assert status_of(client, owner.headers, "triage") == "killed"


def test_deleting_a_team_clears_its_controls_so_a_new_team_of_that_name_inherits_none(
    client: Client, owner: Person, people: People, auth: dict[str, str]
) -> None:
    platform = people.team("platform")
    register(client, owner.headers, "triage", team_id=str(platform))
    killed = set_control(client, owner.headers, "team", "platform", "killed")
    kept = set_control(client, owner.headers, "agent", "triage", "paused")

    deleted = client.delete(f"/api/v1/teams/{platform}", headers=owner.headers)

    assert deleted.status_code == 204, deleted.text
    served = ControlSet.model_validate_json(client.get("/api/v1/controls", headers=auth).content)
    assert [str(control.id) for control in served.controls] == [kept["id"]]
    again = people.team("platform")
    register(client, owner.headers, "billing", team_id=str(again))
    assert status_of(client, owner.headers, "billing") == "active"
    audit = client.get("/api/v1/audit", params={"action": "control.cleared"}, headers=owner.headers)
    assert audit.status_code == 200, audit.text
    [entry] = [e for e in audit.json()["items"] if e["target_id"] == killed["id"]]
    assert entry["after"] == {"reason": "team platform was deleted"}


def status_of(client: Client, headers: dict[str, str], name: str) -> str:
    """The status ``GET /api/v1/agents`` gives the agent ``name``."""
    listed = client.get("/api/v1/agents", headers=headers).json()["items"]
    return str(next(agent["status"] for agent in listed if agent["name"] == name))
