"""``/api/v1/members``: listing, role changes, removal and leaving, with the role rules (no
escalation, the last owner kept), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.db.engine import create_db_engine
from agentops_server.security.permissions import Role, Scope
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, audit_entries, bearer
from tests.server.conftest import make_org
from tests.server.database import db_id, scalar, state
from tests.server.principals import People, Person, limited_key


def test_members_are_listed_with_their_role_teams_and_joining_time(
    client: Client, people: People, owner: Person
) -> None:
    lead = people.add(Role.TEAM_LEAD, email="lea@acme.example", name="Lea")
    people.team("platform", lead)
    people.team("research", lead, owner)

    response = client.get("/api/v1/members", headers=lead.headers)

    assert response.status_code == 200, response.text
    listed = [
        (m["email"], m["name"], m["role"], [t["name"] for t in m["teams"]])
        for m in response.json()["items"]
    ]
    assert listed == [
        ("lea@acme.example", "Lea", "team_lead", ["platform", "research"]),
        ("olga@acme.example", "Olga", "owner", ["research"]),
    ]
    assert all(m["joined_at"] and m["user_id"] for m in response.json()["items"])


def test_another_orgs_members_are_neither_listed_nor_reachable(
    client: Client, owner: Person, migrated_url: str
) -> None:
    stranger = People(migrated_url, make_org(migrated_url, "globex").org_id).add(Role.MEMBER)
    before = state(migrated_url)

    listed = client.get("/api/v1/members", headers=owner.headers).json()["items"]
    reads = client.get(f"/api/v1/members/{stranger.user_id}", headers=owner.headers)
    changes = client.patch(
        f"/api/v1/members/{stranger.user_id}", json={"role": "viewer"}, headers=owner.headers
    )
    removal = client.delete(f"/api/v1/members/{stranger.user_id}", headers=owner.headers)

    assert str(stranger.user_id) not in str(listed)
    for response in (reads, changes, removal):
        assert_problem(response, 404, "member_not_found")
    assert state(migrated_url) == before


def test_an_owner_changes_a_members_role_and_the_change_is_audited(
    client: Client, people: People, owner: Person
) -> None:
    member = people.add(Role.MEMBER)

    response = client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "admin"}, headers=owner.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["role"] == "admin"
    assert people.role_of(member.user_id) == "admin"
    [entry] = audit_entries(client, owner.headers, action="member.role_changed")
    assert (entry["target_type"], entry["target_id"]) == ("member", str(member.user_id))
    assert (entry["before"], entry["after"]) == ({"role": "member"}, {"role": "admin"})
    assert entry["actor_id"] == str(owner.user_id)
    # the new role holds at once: the member can now manage members
    assert client.get("/api/v1/audit", headers=member.headers).status_code == 200


@pytest.mark.parametrize(
    ("actor_role", "target_role", "new_role"),
    [
        (Role.ADMIN, Role.ADMIN, Role.OWNER),  # an admin making an admin (themselves too) owner
        (Role.ADMIN, Role.MEMBER, Role.OWNER),  # an admin making a member owner
        (Role.ADMIN, Role.OWNER, Role.MEMBER),  # an admin demoting the owner
        (Role.ADMIN, Role.OWNER, Role.ADMIN),
    ],
)
def test_role_escalation_is_refused_and_nothing_changes(
    client: Client,
    people: People,
    owner: Person,
    migrated_url: str,
    actor_role: Role,
    target_role: Role,
    new_role: Role,
) -> None:
    actor = people.add(actor_role)
    target = owner if target_role is Role.OWNER else people.add(target_role)
    before = state(migrated_url)

    response = client.patch(
        f"/api/v1/members/{target.user_id}", json={"role": new_role.value}, headers=actor.headers
    )

    assert_problem(response, 403, "role_escalation")
    assert state(migrated_url) == before


def test_an_admin_cannot_make_themselves_owner(
    client: Client, people: People, admin: Person, owner: Person
) -> None:
    response = client.patch(
        f"/api/v1/members/{admin.user_id}", json={"role": "owner"}, headers=admin.headers
    )

    assert_problem(response, 403, "role_escalation")
    assert people.role_of(admin.user_id) == "admin"


def test_an_admin_cannot_remove_an_owner(
    client: Client, admin: Person, owner: Person, migrated_url: str
) -> None:
    before = state(migrated_url)

    response = client.delete(f"/api/v1/members/{owner.user_id}", headers=admin.headers)

    assert_problem(response, 403, "role_escalation")
    assert state(migrated_url) == before


def test_an_admin_key_manages_members_as_an_admin_would(
    client: Client, people: People, owner: Person, org: IssuedKey
) -> None:
    member = people.add(Role.MEMBER)

    promoted = client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "admin"}, headers=bearer(org.key)
    )
    to_owner = client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "owner"}, headers=bearer(org.key)
    )

    assert promoted.status_code == 200, promoted.text
    assert_problem(to_owner, 403, "role_escalation")
    [entry] = audit_entries(client, owner.headers, action="member.role_changed")
    assert (entry["actor_type"], entry["actor_id"]) == ("api_key", str(org.key_id))


@pytest.mark.parametrize("role", [Role.TEAM_LEAD, Role.MEMBER, Role.VIEWER])
def test_roles_below_admin_change_no_ones_role(
    client: Client, people: People, owner: Person, role: Role
) -> None:
    actor = people.add(role)
    target = people.add(Role.VIEWER)

    response = client.patch(
        f"/api/v1/members/{target.user_id}", json={"role": "viewer"}, headers=actor.headers
    )

    assert_problem(response, 403, "permission_denied")


def test_a_read_key_changes_no_ones_role(
    client: Client, people: People, owner: Person, migrated_url: str, org: IssuedKey
) -> None:
    key = bearer(limited_key(migrated_url, org.org_id, scopes=[Scope.READ.value]).key)

    response = client.patch(
        f"/api/v1/members/{owner.user_id}", json={"role": "viewer"}, headers=key
    )

    assert_problem(response, 403, "insufficient_scope")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"role": "superuser"}, "invalid_role"),
        ({"role": ""}, "invalid_role"),
        ({"role": 3}, "validation_error"),
        ({}, "validation_error"),
        ({"role": "admin", "teams": []}, "validation_error"),
    ],
)
def test_a_malformed_role_change_is_refused(
    client: Client,
    people: People,
    owner: Person,
    migrated_url: str,
    body: dict[str, Any],
    code: str,
) -> None:
    member = people.add(Role.MEMBER)
    before = state(migrated_url)

    response = client.patch(f"/api/v1/members/{member.user_id}", json=body, headers=owner.headers)

    assert_problem(response, 400, code)
    assert state(migrated_url) == before


def test_an_unknown_or_malformed_member_id_is_not_found(client: Client, owner: Person) -> None:
    assert_problem(
        client.patch(
            "/api/v1/members/00000000-0000-4000-8000-000000000000",
            json={"role": "viewer"},
            headers=owner.headers,
        ),
        404,
        "member_not_found",
    )
    assert_problem(
        client.delete("/api/v1/members/not-an-id", headers=owner.headers), 404, "not_found"
    )


# -- the last owner ----------------------------------------------------------------------------


def test_the_last_owner_can_be_neither_demoted_nor_removed_nor_leave(
    client: Client, owner: Person, migrated_url: str
) -> None:
    before = state(migrated_url)

    demoted = client.patch(
        f"/api/v1/members/{owner.user_id}", json={"role": "admin"}, headers=owner.headers
    )
    removed = client.delete(f"/api/v1/members/{owner.user_id}", headers=owner.headers)
    left = client.delete("/api/v1/members/me", headers=owner.headers)

    for response in (demoted, removed, left):
        assert_problem(response, 409, "last_owner")
    assert state(migrated_url) == before


def test_with_two_owners_one_steps_down_and_then_the_other_is_the_last(
    client: Client, people: People, owner: Person
) -> None:
    second = people.add(Role.OWNER)

    stepped_down = client.patch(
        f"/api/v1/members/{second.user_id}", json={"role": "admin"}, headers=second.headers
    )
    last = client.patch(
        f"/api/v1/members/{owner.user_id}", json={"role": "admin"}, headers=second.headers
    )

    assert stepped_down.status_code == 200, stepped_down.text
    assert_problem(last, 403, "role_escalation")  # an admin now: owners are out of reach
    assert_problem(
        client.patch(
            f"/api/v1/members/{owner.user_id}", json={"role": "admin"}, headers=owner.headers
        ),
        409,
        "last_owner",
    )
    assert people.role_of(owner.user_id) == "owner"


def app_engine(app: Litestar) -> AsyncEngine:
    """The database engine ``app`` serves requests with."""
    engine: AsyncEngine = app.plugins.get(SQLAlchemyPlugin).config[0].get_engine()
    return engine


def test_demoting_an_owner_while_another_owners_demotion_is_in_flight_keeps_an_owner(
    app: Litestar, client: Client, people: People, owner: Person, migrated_url: str, org: IssuedKey
) -> None:
    """The race the last-owner rule must survive: two owners, each being demoted at the same
    moment by a different transaction. Here one demotion is held open in the database while the
    API demotes the other owner; whichever order the database sees them in, an owner remains."""
    second = people.add(Role.OWNER)
    reached = threading.Event()

    def watch(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FOR UPDATE" in statement or statement.lstrip().startswith("UPDATE memberships"):
            reached.set()  # the API's change is at the database, waiting for the open one

    engine = create_db_engine(migrated_url)
    event.listen(app_engine(app).sync_engine, "before_cursor_execute", watch)
    answer: list[Any] = []
    try:
        with engine.connect() as held:
            held.execute(
                text(
                    "UPDATE memberships SET role = 'admin' WHERE org_id = :org AND user_id = :user"
                ),
                {
                    "org": db_id(migrated_url, org.org_id),
                    "user": db_id(migrated_url, owner.user_id),
                },
            )
            racer = threading.Thread(
                target=lambda: answer.append(
                    client.patch(
                        f"/api/v1/members/{second.user_id}",
                        json={"role": "admin"},
                        headers=owner.headers,
                    )
                )
            )
            racer.start()
            assert reached.wait(timeout=20), "the API never reached the database"
            held.commit()
        racer.join(timeout=40)
    finally:
        event.remove(app_engine(app).sync_engine, "before_cursor_execute", watch)
        engine.dispose()

    assert not racer.is_alive()
    assert_problem(answer[0], 409, "last_owner")
    assert people.role_of(second.user_id) == "owner"
    assert people.role_of(owner.user_id) == "admin"


# -- removing and leaving ------------------------------------------------------------------------


def test_a_removed_member_loses_their_sessions_and_teams_but_keeps_their_account(
    client: Client, people: People, admin: Person, migrated_url: str, org: IssuedKey
) -> None:
    member = people.add(Role.MEMBER, email="mo@acme.example")
    team = people.team("platform", member)
    assert client.get("/api/v1/org", headers=member.headers).status_code == 200

    response = client.delete(f"/api/v1/members/{member.user_id}", headers=admin.headers)

    assert response.status_code == 204, response.text
    assert_problem(client.get("/api/v1/org", headers=member.headers), 401, "not_a_member")
    assert client.get(f"/api/v1/teams/{team}", headers=admin.headers).json()["members"] == []
    revoked = scalar(
        migrated_url,
        "SELECT revoked_reason FROM user_sessions WHERE user_id = :user",
        user=db_id(migrated_url, member.user_id),
    )
    assert revoked == "member.removed"
    assert (
        scalar(
            migrated_url,
            "SELECT email FROM users WHERE id = :user",
            user=db_id(migrated_url, member.user_id),
        )
        == "mo@acme.example"
    )
    [entry] = audit_entries(client, admin.headers, action="member.removed")
    assert entry["before"] == {"email": "mo@acme.example", "role": "member"}


def test_a_member_leaves_the_org_and_their_session_ends(
    client: Client, people: People, owner: Person
) -> None:
    viewer = people.add(Role.VIEWER, email="vi@acme.example")

    response = client.delete("/api/v1/members/me", headers=viewer.headers)

    assert response.status_code == 204, response.text
    assert_problem(client.get("/api/v1/agents", headers=viewer.headers), 401, "not_a_member")
    [entry] = audit_entries(client, owner.headers, action="member.left")
    assert (entry["actor_id"], entry["target_id"]) == (str(viewer.user_id), str(viewer.user_id))


def test_an_owner_with_a_co_owner_may_leave(client: Client, people: People, owner: Person) -> None:
    people.add(Role.OWNER)

    response = client.delete("/api/v1/members/me", headers=owner.headers)

    assert response.status_code == 204, response.text
    assert people.role_of(owner.user_id) is None


def test_a_key_cannot_leave_an_org(client: Client, org: IssuedKey) -> None:
    assert_problem(
        client.delete("/api/v1/members/me", headers=bearer(org.key)), 403, "insufficient_scope"
    )
