"""``GET /api/v1/audit``: the org's audit log, filtered and paged, and the log being
append-only in the database itself, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, audit_entries, bearer
from tests.server.conftest import make_org
from tests.server.database import db_id, execute, scalar
from tests.server.principals import People, Person, limited_key


def make_team(client: Client, person: Person, name: str) -> str:
    response = client.post("/api/v1/teams", json={"name": name}, headers=person.headers)
    assert response.status_code == 201, response.text
    team_id: str = response.json()["id"]
    return team_id


def test_each_entry_says_who_did_what_to_what_from_where_and_what_changed(
    client: Client, admin: Person, people: People
) -> None:
    member = people.add(Role.MEMBER)

    client.patch(
        f"/api/v1/members/{member.user_id}",
        json={"role": "viewer"},
        headers={**admin.headers, "X-Request-ID": "req-42"},
    )

    [entry] = audit_entries(client, admin.headers)
    assert entry["action"] == "member.role_changed"
    assert (entry["actor_type"], entry["actor_id"]) == ("user", str(admin.user_id))
    assert (entry["target_type"], entry["target_id"]) == ("member", str(member.user_id))
    assert (entry["before"], entry["after"]) == ({"role": "member"}, {"role": "viewer"})
    assert entry["ip"]
    assert entry["request_id"] == "req-42"
    assert dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(entry["at"]) < dt.timedelta(
        minutes=1
    )


def test_entries_come_newest_first_and_filter_by_action_actor_target_and_time(
    client: Client, admin: Person, people: People, org: IssuedKey
) -> None:
    other_admin = people.add(Role.ADMIN)
    platform = make_team(client, admin, "platform")
    make_team(client, other_admin, "research")
    client.patch(f"/api/v1/teams/{platform}", json={"name": "infra"}, headers=admin.headers)
    client.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=bearer(org.key)
    )
    everything = audit_entries(client, admin.headers)
    middle = everything[2]["at"]

    assert [e["action"] for e in everything] == [
        "api_key.created",
        "team.renamed",
        "team.created",
        "team.created",
    ]
    assert [e["action"] for e in audit_entries(client, admin.headers, action="team.created")] == [
        "team.created",
        "team.created",
    ]
    assert [e["action"] for e in audit_entries(client, admin.headers, action="team.")] == [
        "team.renamed",
        "team.created",
        "team.created",
    ]
    assert (
        audit_entries(client, admin.headers, action="team") == []
    )  # exact unless it ends in a dot
    assert {
        e["actor_id"] for e in audit_entries(client, admin.headers, actor_id=str(org.key_id))
    } == {str(org.key_id)}
    assert [
        e["after"]["name"]
        for e in audit_entries(client, admin.headers, actor_id=str(other_admin.user_id))
    ] == ["research"]
    assert [e["action"] for e in audit_entries(client, admin.headers, target_id=platform)] == [
        "team.renamed",
        "team.created",
    ]
    assert [e["action"] for e in audit_entries(client, admin.headers, target_type="api_key")] == [
        "api_key.created"
    ]
    assert audit_entries(client, admin.headers, since=middle) == everything[:3]
    assert audit_entries(client, admin.headers, until=middle) == everything[3:]


def test_paging_through_the_log_shows_every_entry_once(client: Client, admin: Person) -> None:
    for number in range(7):
        make_team(client, admin, f"team {number}")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0

    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/audit", params=params, headers=admin.headers).json()
        seen += [entry["after"]["name"] for entry in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        make_team(client, admin, f"late {pages}")  # newer entries never shift later pages

    assert pages == 3
    assert seen == [f"team {number}" for number in reversed(range(7))]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 201}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"action": "DROP TABLE"}, "invalid_action"),
        ({"action": "member.%"}, "invalid_action"),
        ({"since": "yesterday"}, "invalid_timestamp"),
        ({"actor_id": "someone"}, "validation_error"),
    ],
)
def test_bad_filters_are_refused_precisely(
    client: Client, admin: Person, params: dict[str, Any], code: str
) -> None:
    assert_problem(client.get("/api/v1/audit", params=params, headers=admin.headers), 400, code)


def test_two_hundred_entries_fit_on_a_page(client: Client, admin: Person) -> None:
    response = client.get("/api/v1/audit", params={"limit": 200}, headers=admin.headers)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("role", [Role.TEAM_LEAD, Role.MEMBER, Role.VIEWER])
def test_only_owners_admins_and_admin_keys_read_the_log(
    client: Client, people: People, role: Role, migrated_url: str, org: IssuedKey
) -> None:
    reader = limited_key(migrated_url, org.org_id, scopes=["read"])

    assert_problem(
        client.get("/api/v1/audit", headers=people.add(role).headers), 403, "permission_denied"
    )
    assert_problem(
        client.get("/api/v1/audit", headers=bearer(reader.key)), 403, "insufficient_scope"
    )
    assert client.get("/api/v1/audit", headers=bearer(org.key)).status_code == 200


def test_another_orgs_entries_never_show(client: Client, admin: Person, migrated_url: str) -> None:
    their_admin = People(migrated_url, make_org(migrated_url, "globex").org_id).add(Role.ADMIN)
    theirs = make_team(client, their_admin, "globex secret team")

    assert audit_entries(client, admin.headers) == []
    assert audit_entries(client, admin.headers, target_id=theirs) == []
    assert audit_entries(client, admin.headers, actor_id=str(their_admin.user_id)) == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'nothing.happened'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE org_id = :org",
    ],
)
def test_the_log_refuses_updates_and_deletes_even_from_the_databases_own_user(
    client: Client, admin: Person, migrated_url: str, org: IssuedKey, statement: str
) -> None:
    make_team(client, admin, "platform")

    with pytest.raises(DBAPIError, match="append-only"):  # a superuser on PostgreSQL
        execute(migrated_url, statement, org=db_id(migrated_url, org.org_id))

    assert [e["action"] for e in audit_entries(client, admin.headers)] == ["team.created"]
    assert scalar(migrated_url, "SELECT count(*) FROM audit_log") == 1


def test_an_unknown_actor_filter_finds_nothing(client: Client, admin: Person) -> None:
    make_team(client, admin, "platform")

    assert audit_entries(client, admin.headers, actor_id=str(uuid.uuid4())) == []
