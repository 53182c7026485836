"""``/api/v1/api-keys``: creating (the secret shown once), listing, revoking and rotating keys,
and what the authentication middleware does with them (revoked, expired, last used), on SQLite
and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentops_server.refusals import Forbidden
from agentops_server.security.permissions import SCOPE_PERMISSIONS, Permission, Role, Scope
from agentops_server.security.principal import Principal
from agentops_server.services.identity.api_keys import IssuedKey, check_grantable
from tests.server.api import Client, assert_problem, audit_entries, bearer, moment
from tests.server.conftest import make_org
from tests.server.database import db_id, execute, state
from tests.server.mail import invitation_token, mailbox
from tests.server.principals import PASSWORD, People, Person, limited_key


def create(client: Client, person: Person, **body: Any) -> Any:
    body.setdefault("name", "ci")
    body.setdefault("scopes", ["read"])
    return client.post("/api/v1/api-keys", json=body, headers=person.headers)


def listed(client: Client, person: Person, key_id: str) -> dict[str, Any]:
    response = client.get("/api/v1/api-keys", headers=person.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = next(k for k in response.json()["items"] if k["id"] == key_id)
    return found


def set_key(migrated_url: str, key_id: str, column: str, value: dt.datetime) -> None:
    execute(
        migrated_url,
        f"UPDATE api_keys SET {column} = :value WHERE id = :key",
        value=value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" "),
        key=db_id(migrated_url, uuid.UUID(key_id)),
    )


# -- creating and listing ----------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_listed_by_prefix_only(
    client: Client, admin: Person, migrated_url: str
) -> None:
    response = create(client, admin, name="ingest from CI", scopes=["ingest", "read"])

    assert response.status_code == 201, response.text
    created = response.json()
    key = created["key"]
    assert key.startswith("ak_")
    assert created["prefix"] in key
    assert created["created_by"] == str(admin.user_id)
    shown = listed(client, admin, created["id"])
    assert shown == {name: created[name] for name in shown}
    assert set(shown) == {
        "id",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "created_by",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "state",
        "withheld",
    }
    assert shown["scopes"] == ["ingest", "read"]
    assert (shown["state"], shown["withheld"]) == ("active", [])
    assert key not in client.get("/api/v1/api-keys", headers=admin.headers).text
    assert key not in str(state(migrated_url))
    audited = client.get(
        "/api/v1/audit", params={"action": "api_key.created"}, headers=admin.headers
    )
    assert audited.json()["items"][0]["after"]["scopes"] == ["ingest", "read"]
    assert key not in audited.text


def test_a_key_works_for_its_scopes_and_nothing_else(client: Client, admin: Person) -> None:
    key = bearer(create(client, admin, scopes=["ingest"]).json()["key"])

    assert_problem(client.get("/api/v1/runs", headers=key), 403, "insufficient_scope")
    assert_problem(client.get("/api/v1/api-keys", headers=key), 403, "insufficient_scope")


def test_a_key_may_expire_in_some_days_or_at_a_moment(client: Client, admin: Person) -> None:
    now = dt.datetime.now(dt.UTC)
    in_days = create(client, admin, expires_in_days=30).json()
    at = create(client, admin, expires_at=(now + dt.timedelta(hours=2)).isoformat()).json()

    assert moment(in_days["expires_at"]) - now == pytest.approx(
        dt.timedelta(days=30), abs=dt.timedelta(minutes=1)
    )
    assert moment(at["expires_at"]) - now == pytest.approx(
        dt.timedelta(hours=2), abs=dt.timedelta(minutes=1)
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"scopes": ["read", "root"]}, "unknown_scope"),
        ({"scopes": []}, "no_scopes"),
        ({"name": ""}, "invalid_name"),
        ({"name": "x" * 201}, "invalid_name"),
        ({"expires_in_days": 0}, "invalid_expiry"),
        ({"expires_in_days": 99999}, "invalid_expiry"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "invalid_expiry"),
        ({"expires_at": "2999-01-01T00:00:00Z", "expires_in_days": 3}, "conflicting_expiry"),
        ({"expires_at": "tomorrow"}, "invalid_timestamp"),
        ({"scopes": "read"}, "validation_error"),
        ({"hash": "0" * 64}, "validation_error"),
    ],
)
def test_bad_keys_are_refused_precisely_and_nothing_is_made(
    client: Client, admin: Person, migrated_url: str, body: dict[str, Any], code: str
) -> None:
    before = state(migrated_url)

    response = create(client, admin, **body)

    assert_problem(response, 400, code)
    assert state(migrated_url) == before


@pytest.mark.parametrize("role", [Role.TEAM_LEAD, Role.MEMBER, Role.VIEWER])
def test_roles_below_admin_neither_see_nor_make_keys(
    client: Client, people: People, role: Role
) -> None:
    person = people.add(role)

    assert_problem(create(client, person), 403, "permission_denied")
    assert_problem(client.get("/api/v1/api-keys", headers=person.headers), 403, "permission_denied")


def test_a_key_without_the_admin_scope_makes_no_keys(
    client: Client, migrated_url: str, org: IssuedKey
) -> None:
    reader = limited_key(migrated_url, org.org_id, scopes=["read", "ingest"])

    response = client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["read"]}, headers=bearer(reader.key)
    )

    assert_problem(response, 403, "insufficient_scope")


def test_an_admin_key_makes_keys_it_could_use_itself(client: Client, org: IssuedKey) -> None:
    response = client.post(
        "/api/v1/api-keys", json={"name": "child", "scopes": ["ingest"]}, headers=bearer(org.key)
    )

    assert response.status_code == 201, response.text
    assert response.json()["created_by"] is None


def test_nobody_grants_a_key_more_than_they_may_do() -> None:
    """Today only ``admin`` grants ``api_keys:write`` and it covers every other scope, so the API
    cannot show this; the rule still holds for any caller whose permissions are narrower."""
    narrow = Principal(
        "api_key",
        uuid.uuid4(),
        frozenset({Permission.API_KEYS_WRITE}) | SCOPE_PERMISSIONS[Scope.READ],
        key_id=uuid.uuid4(),
    )

    check_grantable(narrow, ["read"])
    with pytest.raises(Forbidden) as refused:
        check_grantable(narrow, ["read", "admin", "ingest"])
    assert refused.value.code == "scope_escalation"
    assert refused.value.extra == {"scopes": ["admin", "ingest"]}


# -- revoking --------------------------------------------------------------------------------------


def test_a_revoked_key_stops_working_at_once_and_revoking_again_changes_nothing(
    client: Client, admin: Person
) -> None:
    created = create(client, admin).json()
    key = bearer(created["key"])
    assert client.get("/api/v1/runs", headers=key).status_code == 200

    first = client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin.headers)
    second = client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin.headers)

    assert (first.status_code, second.status_code) == (204, 204)
    assert_problem(client.get("/api/v1/runs", headers=key), 401, "revoked_api_key")
    assert listed(client, admin, created["id"])["revoked_at"] is not None
    entries = client.get(
        "/api/v1/audit", params={"action": "api_key.revoked"}, headers=admin.headers
    ).json()["items"]
    assert len(entries) == 1
    assert entries[0]["before"]["revoked_at"] is None


def test_another_orgs_keys_are_out_of_reach(
    client: Client, admin: Person, migrated_url: str
) -> None:
    theirs = make_org(migrated_url, "globex")
    before = state(migrated_url)

    revoked = client.delete(f"/api/v1/api-keys/{theirs.key_id}", headers=admin.headers)
    rotated = client.post(f"/api/v1/api-keys/{theirs.key_id}/rotate", headers=admin.headers)
    listing = client.get("/api/v1/api-keys", headers=admin.headers)

    assert_problem(revoked, 404, "api_key_not_found")
    assert_problem(rotated, 404, "api_key_not_found")
    assert str(theirs.key_id) not in listing.text
    assert state(migrated_url) == before
    assert client.get("/api/v1/runs", headers=bearer(theirs.key)).status_code == 200


# -- rotating --------------------------------------------------------------------------------------


def test_rotating_makes_a_twin_key_and_revokes_the_old_one(client: Client, admin: Person) -> None:
    old = create(client, admin, name="deploy", scopes=["read", "ingest"], expires_in_days=90).json()

    response = client.post(f"/api/v1/api-keys/{old['id']}/rotate", headers=admin.headers)

    assert response.status_code == 201, response.text
    new = response.json()
    assert new["id"] != old["id"]
    assert new["key"] != old["key"]
    assert (new["name"], new["scopes"], new["expires_at"]) == (
        old["name"],
        old["scopes"],
        old["expires_at"],
    )
    assert client.get("/api/v1/runs", headers=bearer(new["key"])).status_code == 200
    assert_problem(client.get("/api/v1/runs", headers=bearer(old["key"])), 401, "revoked_api_key")
    actions = client.get("/api/v1/audit", params={"action": "api_key."}, headers=admin.headers)
    assert [(e["action"], e["target_id"]) for e in actions.json()["items"][:2]] == [
        ("api_key.rotated", old["id"]),
        ("api_key.created", new["id"]),
    ]


def test_with_a_grace_period_the_old_key_works_until_it_ends(
    client: Client, admin: Person, migrated_url: str
) -> None:
    old = create(client, admin).json()

    response = client.post(
        f"/api/v1/api-keys/{old['id']}/rotate", json={"grace_seconds": 3600}, headers=admin.headers
    )

    assert response.status_code == 201, response.text
    assert client.get("/api/v1/runs", headers=bearer(old["key"])).status_code == 200
    assert client.get("/api/v1/runs", headers=bearer(response.json()["key"])).status_code == 200
    ends = moment(listed(client, admin, old["id"])["expires_at"])
    assert ends - dt.datetime.now(dt.UTC) == pytest.approx(
        dt.timedelta(hours=1), abs=dt.timedelta(minutes=1)
    )
    set_key(
        migrated_url, old["id"], "expires_at", dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )
    assert_problem(client.get("/api/v1/runs", headers=bearer(old["key"])), 401, "expired_api_key")


@pytest.mark.parametrize("grace", [-1, 8 * 24 * 3600])
def test_a_grace_period_is_at_most_seven_days(client: Client, admin: Person, grace: int) -> None:
    old = create(client, admin).json()

    response = client.post(
        f"/api/v1/api-keys/{old['id']}/rotate", json={"grace_seconds": grace}, headers=admin.headers
    )

    assert_problem(response, 400, "invalid_grace")


def test_a_revoked_or_expired_key_cannot_be_rotated(
    client: Client, admin: Person, migrated_url: str
) -> None:
    revoked = create(client, admin).json()
    client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=admin.headers)
    expired = create(client, admin, expires_in_days=1).json()
    set_key(
        migrated_url, expired["id"], "expires_at", dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    before = state(migrated_url)

    assert_problem(
        client.post(f"/api/v1/api-keys/{revoked['id']}/rotate", headers=admin.headers),
        410,
        "api_key_revoked",
    )
    assert_problem(
        client.post(f"/api/v1/api-keys/{expired['id']}/rotate", headers=admin.headers),
        410,
        "api_key_expired",
    )
    assert state(migrated_url) == before


# -- what the middleware does ---------------------------------------------------------------------


def test_an_expired_key_is_refused(client: Client, admin: Person, migrated_url: str) -> None:
    created = create(client, admin, expires_in_days=1).json()
    set_key(
        migrated_url, created["id"], "expires_at", dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )

    assert_problem(
        client.get("/api/v1/runs", headers=bearer(created["key"])), 401, "expired_api_key"
    )


def test_last_used_is_written_at_most_once_a_minute(
    client: Client, admin: Person, migrated_url: str
) -> None:
    created = create(client, admin).json()
    key = bearer(created["key"])
    assert listed(client, admin, created["id"])["last_used_at"] is None

    client.get("/api/v1/runs", headers=key)
    first = listed(client, admin, created["id"])["last_used_at"]
    client.get("/api/v1/runs", headers=key)
    second = listed(client, admin, created["id"])["last_used_at"]
    set_key(migrated_url, created["id"], "last_used_at", moment(first) - dt.timedelta(minutes=2))
    client.get("/api/v1/runs", headers=key)
    third = listed(client, admin, created["id"])["last_used_at"]

    assert first is not None
    assert second == first  # within the minute: no write
    assert moment(third) > moment(first)  # a minute on: written again
    assert dt.datetime.now(dt.UTC) - moment(third) < dt.timedelta(minutes=1)


# -- keys follow their creator (docs/decisions/0015) -----------------------------------------------


def change_role(client: Client, owner: Person, person: Person, role: str) -> None:
    response = client.patch(
        f"/api/v1/members/{person.user_id}", json={"role": role}, headers=owner.headers
    )
    assert response.status_code == 200, response.text


def remove(client: Client, owner: Person, person: Person) -> None:
    response = client.delete(f"/api/v1/members/{person.user_id}", headers=owner.headers)
    assert response.status_code == 204, response.text


def test_a_demoted_creators_key_does_only_what_the_creator_still_may(
    client: Client, owner: Person, admin: Person
) -> None:
    created = create(client, admin, name="deploy", scopes=["admin"]).json()
    key = bearer(created["key"])

    change_role(client, owner, admin, "viewer")
    runs = client.get("/api/v1/runs", headers=key)
    members = client.get("/api/v1/members", headers=key)
    new_key = client.post("/api/v1/api-keys", json={"name": "x", "scopes": ["read"]}, headers=key)

    assert runs.status_code == 200, runs.text  # viewers read runs
    assert assert_problem(members, 403, "creator_lacks_permission")["permission"] == "members:read"
    assert_problem(new_key, 403, "creator_lacks_permission")
    shown = listed(client, owner, created["id"])
    assert shown["state"] == "capped"
    assert {"api_keys:write", "members:read"} <= set(shown["withheld"])
    assert "runs:read" not in shown["withheld"]
    [entry] = audit_entries(client, owner.headers, action="api_key.capped")
    assert entry["target_id"] == created["id"]
    assert (entry["before"]["creator_role"], entry["after"]["creator_role"]) == ("admin", "viewer")
    assert entry["before"]["withheld"] == []


def test_a_departed_creators_key_does_nothing_and_owners_see_it(
    client: Client, owner: Person, admin: Person
) -> None:
    created = create(client, admin, name="deploy", scopes=["admin"]).json()
    key = bearer(created["key"])
    change_role(client, owner, admin, "viewer")

    remove(client, owner, admin)

    for path in ("/api/v1/runs", "/api/v1/agents", "/api/v1/api-keys"):
        assert_problem(client.get(path, headers=key), 401, "suspended_api_key")
    suspended = client.get(
        "/api/v1/api-keys", params={"state": "suspended"}, headers=owner.headers
    ).json()["items"]
    assert [(k["id"], k["created_by"]) for k in suspended] == [(created["id"], str(admin.user_id))]
    [entry] = audit_entries(client, owner.headers, action="api_key.suspended")
    assert entry["target_id"] == created["id"]
    assert entry["after"]["creator_role"] is None


def test_an_owner_takes_over_a_departed_creators_key_by_rotating_it(
    client: Client, owner: Person, admin: Person
) -> None:
    old = create(client, admin, name="deploy", scopes=["admin"]).json()
    remove(client, owner, admin)

    rotated = client.post(f"/api/v1/api-keys/{old['id']}/rotate", headers=owner.headers)

    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert (new["created_by"], new["state"]) == (str(owner.user_id), "active")
    assert client.get("/api/v1/members", headers=bearer(new["key"])).status_code == 200
    assert listed(client, owner, old["id"])["state"] == "revoked"


def test_a_creator_promoted_back_gets_their_keys_back_whole(
    client: Client, owner: Person, admin: Person
) -> None:
    created = create(client, admin, scopes=["admin"]).json()
    change_role(client, owner, admin, "member")

    change_role(client, owner, admin, "admin")

    assert client.get("/api/v1/members", headers=bearer(created["key"])).status_code == 200
    assert listed(client, owner, created["id"])["state"] == "active"
    actions = [entry["action"] for entry in audit_entries(client, owner.headers, action="api_key.")]
    assert actions[:2] == ["api_key.restored", "api_key.capped"]  # newest first


def test_a_role_that_still_allows_a_keys_scopes_changes_nothing_for_it(
    client: Client, owner: Person, admin: Person
) -> None:
    created = create(client, admin, scopes=["read"]).json()

    change_role(client, owner, admin, "member")

    assert listed(client, owner, created["id"])["state"] == "active"
    assert audit_entries(client, owner.headers, action="api_key.capped") == []


def test_a_key_made_by_a_key_acts_for_the_person_behind_it(
    client: Client, owner: Person, admin: Person
) -> None:
    parent = bearer(create(client, admin, scopes=["admin"]).json()["key"])
    child = client.post(
        "/api/v1/api-keys", json={"name": "child", "scopes": ["read"]}, headers=parent
    ).json()

    remove(client, owner, admin)

    assert child["created_by"] == str(admin.user_id)
    assert_problem(
        client.get("/api/v1/runs", headers=bearer(child["key"])), 401, "suspended_api_key"
    )


def test_a_creator_who_comes_back_gets_their_keys_back_under_their_new_role(
    client: Client, owner: Person, people: People, mail_dir: Path
) -> None:
    ada = people.add(Role.ADMIN, email="ada@acme.example", password=PASSWORD)
    created = create(client, ada, scopes=["admin"]).json()
    remove(client, owner, ada)
    client.post(
        "/api/v1/invitations",
        json={"email": ada.email, "role": "viewer"},
        headers=owner.headers,
    )

    accepted = client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation_token(mailbox(mail_dir)[-1]), "password": PASSWORD},
    )

    assert accepted.status_code == 200, accepted.text
    assert client.get("/api/v1/runs", headers=bearer(created["key"])).status_code == 200
    assert_problem(
        client.get("/api/v1/members", headers=bearer(created["key"])),
        403,
        "creator_lacks_permission",
    )
    [entry] = audit_entries(client, owner.headers, action="api_key.capped")
    assert (entry["before"]["creator_role"], entry["after"]["creator_role"]) == (None, "viewer")


def test_the_orgs_own_keys_follow_no_one(
    client: Client, owner: Person, admin: Person, org: IssuedKey
) -> None:
    remove(client, owner, admin)

    assert listed(client, owner, str(org.key_id))["created_by"] is None
    assert client.get("/api/v1/members", headers=bearer(org.key)).status_code == 200
