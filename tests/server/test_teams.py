"""``/api/v1/teams`` and giving agents to teams: admins manage every team, team leads only their
own, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, audit_entries, bearer
from tests.server.conftest import make_org
from tests.server.database import state
from tests.server.ingest_events import T0
from tests.server.principals import People, Person, limited_key
from tests.server.reading import seeded


@pytest.fixture
def lead(people: People) -> Person:
    return people.add(Role.TEAM_LEAD, email="lea@acme.example")


@pytest.fixture
def platform(people: People, lead: Person) -> uuid.UUID:
    """The lead's team."""
    return people.team("platform", lead)


@pytest.fixture
def research(people: People) -> uuid.UUID:
    """A team the lead is not in."""
    return people.team("research")


def agent_of(migrated_url: str, org: IssuedKey, name: str, team: uuid.UUID | None = None) -> str:
    with seeded(migrated_url, org.org_id) as rows:
        agent = rows.agent(name, first_seen_at=T0, last_seen_at=T0)
        agent.team_id = team
    return str(agent.id)


# -- admins --------------------------------------------------------------------------------------


def test_an_admin_creates_renames_lists_and_deletes_a_team_and_each_step_is_audited(
    client: Client, admin: Person
) -> None:
    created = client.post("/api/v1/teams", json={"name": " Platform "}, headers=admin.headers)
    team = created.json()["id"]
    renamed = client.patch(f"/api/v1/teams/{team}", json={"name": "Infra"}, headers=admin.headers)
    listed = client.get("/api/v1/teams", headers=admin.headers)
    deleted = client.delete(f"/api/v1/teams/{team}", headers=admin.headers)

    assert created.status_code == 201, created.text
    assert created.json()["name"] == "Platform"
    assert renamed.json()["name"] == "Infra"
    assert [(t["name"], t["member_count"]) for t in listed.json()["items"]] == [("Infra", 0)]
    assert deleted.status_code == 204
    assert_problem(
        client.get(f"/api/v1/teams/{team}", headers=admin.headers), 404, "team_not_found"
    )
    actions = [e["action"] for e in audit_entries(client, admin.headers, action="team.")]
    assert actions == ["team.deleted", "team.renamed", "team.created"]


def test_members_are_added_to_and_removed_from_teams(
    client: Client, admin: Person, people: People, research: uuid.UUID
) -> None:
    member = people.add(Role.MEMBER, email="mo@acme.example")

    added = client.put(f"/api/v1/teams/{research}/members/{member.user_id}", headers=admin.headers)
    again = client.put(f"/api/v1/teams/{research}/members/{member.user_id}", headers=admin.headers)

    assert added.status_code == 200, added.text
    assert [m["email"] for m in added.json()["members"]] == ["mo@acme.example"]
    assert again.json() == added.json()
    removed = client.delete(
        f"/api/v1/teams/{research}/members/{member.user_id}", headers=admin.headers
    )
    assert removed.status_code == 204
    assert client.get(f"/api/v1/teams/{research}", headers=admin.headers).json()["members"] == []
    assert [e["action"] for e in audit_entries(client, admin.headers, action="team.")] == [
        "team.member_removed",
        "team.member_added",
    ]


def test_team_names_are_unique_in_an_org(
    client: Client, admin: Person, research: uuid.UUID, platform: uuid.UUID, migrated_url: str
) -> None:
    before = state(migrated_url)

    created = client.post("/api/v1/teams", json={"name": "research"}, headers=admin.headers)
    renamed = client.patch(
        f"/api/v1/teams/{platform}", json={"name": "research"}, headers=admin.headers
    )

    assert_problem(created, 409, "team_name_taken")
    assert_problem(renamed, 409, "team_name_taken")
    assert state(migrated_url) == before


def test_another_org_may_use_the_same_team_name(
    client: Client, admin: Person, research: uuid.UUID, migrated_url: str
) -> None:
    People(migrated_url, make_org(migrated_url, "globex").org_id).team("ops")

    response = client.post("/api/v1/teams", json={"name": "ops"}, headers=admin.headers)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "x" * 201}, "invalid_name"),
        ({"name": "a\nb"}, "invalid_name"),
        ({"name": None}, "validation_error"),
        ({"title": "ops"}, "validation_error"),
    ],
)
def test_bad_team_names_are_refused(
    client: Client, admin: Person, migrated_url: str, body: dict[str, Any], code: str
) -> None:
    before = state(migrated_url)

    response = client.post("/api/v1/teams", json=body, headers=admin.headers)

    assert_problem(response, 400, code)
    assert state(migrated_url) == before


def test_deleting_a_team_leaves_its_members_in_the_org_and_its_agents_without_a_team(
    client: Client,
    admin: Person,
    lead: Person,
    platform: uuid.UUID,
    migrated_url: str,
    org: IssuedKey,
) -> None:
    agent = agent_of(migrated_url, org, "triage", platform)
    client.post(
        "/api/v1/invitations",
        json={"email": "nina@example.com", "role": "member", "team_id": str(platform)},
        headers=admin.headers,
    )

    response = client.delete(f"/api/v1/teams/{platform}", headers=admin.headers)

    assert response.status_code == 204, response.text
    member = client.get(f"/api/v1/members/{lead.user_id}", headers=admin.headers).json()
    assert (member["role"], member["teams"]) == ("team_lead", [])
    moved = client.patch(f"/api/v1/agents/{agent}", json={"team_id": None}, headers=admin.headers)
    assert moved.json()["team_id"] is None
    [invitation] = client.get("/api/v1/invitations", headers=admin.headers).json()["items"]
    assert invitation["team_id"] is None
    [entry] = audit_entries(client, admin.headers, action="team.deleted")
    assert entry["before"] == {"name": "platform", "members": [str(lead.user_id)]}


def test_only_members_of_the_org_join_its_teams(
    client: Client, admin: Person, research: uuid.UUID, migrated_url: str
) -> None:
    stranger = People(migrated_url, make_org(migrated_url, "globex").org_id).add(Role.MEMBER)

    response = client.put(
        f"/api/v1/teams/{research}/members/{stranger.user_id}", headers=admin.headers
    )

    assert_problem(response, 404, "member_not_found")


def test_another_orgs_teams_are_out_of_reach(
    client: Client, admin: Person, migrated_url: str
) -> None:
    theirs = People(migrated_url, make_org(migrated_url, "globex").org_id).team("ops")
    before = state(migrated_url)

    for response in (
        client.get(f"/api/v1/teams/{theirs}", headers=admin.headers),
        client.patch(f"/api/v1/teams/{theirs}", json={"name": "mine"}, headers=admin.headers),
        client.delete(f"/api/v1/teams/{theirs}", headers=admin.headers),
        client.put(f"/api/v1/teams/{theirs}/members/{admin.user_id}", headers=admin.headers),
    ):
        assert_problem(response, 404, "team_not_found")
    assert client.get("/api/v1/teams", headers=admin.headers).json()["items"] == []
    assert state(migrated_url) == before


# -- team leads ------------------------------------------------------------------------------------


def test_a_team_lead_manages_their_own_team(
    client: Client, lead: Person, people: People, platform: uuid.UUID
) -> None:
    member = people.add(Role.MEMBER)

    renamed = client.patch(
        f"/api/v1/teams/{platform}", json={"name": "Platform"}, headers=lead.headers
    )
    added = client.put(f"/api/v1/teams/{platform}/members/{member.user_id}", headers=lead.headers)

    assert renamed.status_code == 200, renamed.text
    assert added.status_code == 200, added.text
    assert len(added.json()["members"]) == 2


def test_a_team_lead_cannot_change_another_team(
    client: Client, lead: Person, people: People, research: uuid.UUID, migrated_url: str
) -> None:
    member = people.add(Role.MEMBER)
    before = state(migrated_url)

    for response in (
        client.patch(f"/api/v1/teams/{research}", json={"name": "mine"}, headers=lead.headers),
        client.put(f"/api/v1/teams/{research}/members/{member.user_id}", headers=lead.headers),
        client.put(f"/api/v1/teams/{research}/members/{lead.user_id}", headers=lead.headers),
        client.delete(f"/api/v1/teams/{research}/members/{member.user_id}", headers=lead.headers),
    ):
        assert_problem(response, 403, "not_your_team")
    assert state(migrated_url) == before


def test_a_team_lead_neither_creates_nor_deletes_teams(
    client: Client, lead: Person, platform: uuid.UUID, migrated_url: str
) -> None:
    before = state(migrated_url)

    created = client.post("/api/v1/teams", json={"name": "mine"}, headers=lead.headers)
    deleted = client.delete(f"/api/v1/teams/{platform}", headers=lead.headers)

    assert_problem(created, 403, "admin_required")
    assert_problem(deleted, 403, "admin_required")
    assert state(migrated_url) == before


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_members_and_viewers_change_no_team(
    client: Client, people: People, research: uuid.UUID, role: Role
) -> None:
    person = people.add(role)

    response = client.patch(f"/api/v1/teams/{research}", json={"name": "x"}, headers=person.headers)

    assert_problem(response, 403, "permission_denied")


def test_viewers_do_not_see_teams(client: Client, people: People) -> None:
    viewer = people.add(Role.VIEWER)

    assert_problem(client.get("/api/v1/teams", headers=viewer.headers), 403, "permission_denied")


# -- agents and teams ------------------------------------------------------------------------------


def test_an_admin_gives_an_agent_to_a_team_and_it_is_audited(
    client: Client, admin: Person, research: uuid.UUID, migrated_url: str, org: IssuedKey
) -> None:
    agent = agent_of(migrated_url, org, "triage")

    response = client.patch(
        f"/api/v1/agents/{agent}", json={"team_id": str(research)}, headers=admin.headers
    )

    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["team_id"]) == (agent, str(research))
    assert response.json()["team"] == "research"
    [entry] = audit_entries(client, admin.headers, action="agent.updated")
    assert (entry["before"], entry["after"]) == ({"team_id": None}, {"team_id": str(research)})


def test_a_team_lead_moves_agents_only_between_their_teams_and_no_team(
    client: Client,
    lead: Person,
    platform: uuid.UUID,
    research: uuid.UUID,
    migrated_url: str,
    org: IssuedKey,
) -> None:
    free = agent_of(migrated_url, org, "free")
    theirs = agent_of(migrated_url, org, "theirs", research)

    taken = client.patch(
        f"/api/v1/agents/{free}", json={"team_id": str(platform)}, headers=lead.headers
    )
    released = client.patch(f"/api/v1/agents/{free}", json={"team_id": None}, headers=lead.headers)
    before = state(migrated_url)
    given_away = client.patch(
        f"/api/v1/agents/{free}", json={"team_id": str(research)}, headers=lead.headers
    )
    poached = client.patch(
        f"/api/v1/agents/{theirs}", json={"team_id": str(platform)}, headers=lead.headers
    )

    assert taken.json()["team_id"] == str(platform)
    assert released.json()["team_id"] is None
    assert_problem(given_away, 403, "not_your_team")
    assert_problem(poached, 403, "not_your_team")
    assert state(migrated_url) == before


def test_an_agent_goes_only_to_a_team_of_its_org(
    client: Client, admin: Person, migrated_url: str, org: IssuedKey
) -> None:
    agent = agent_of(migrated_url, org, "triage")
    theirs = People(migrated_url, make_org(migrated_url, "globex").org_id).team("ops")

    foreign = client.patch(
        f"/api/v1/agents/{agent}", json={"team_id": str(theirs)}, headers=admin.headers
    )
    unknown = client.patch(
        f"/api/v1/agents/{uuid.uuid4()}", json={"team_id": None}, headers=admin.headers
    )
    malformed = client.patch("/api/v1/agents/triage", json={"team_id": None}, headers=admin.headers)

    assert_problem(foreign, 404, "team_not_found")
    assert_problem(unknown, 404, "agent_not_found")
    assert_problem(malformed, 404, "agent_not_found")


def test_a_read_key_gives_no_agent_to_a_team(
    client: Client, migrated_url: str, org: IssuedKey, research: uuid.UUID
) -> None:
    agent = agent_of(migrated_url, org, "triage")
    key = limited_key(migrated_url, org.org_id, scopes=["read"])

    response = client.patch(
        f"/api/v1/agents/{agent}", json={"team_id": str(research)}, headers=bearer(key.key)
    )

    assert_problem(response, 403, "insufficient_scope")
