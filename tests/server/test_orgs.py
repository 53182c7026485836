"""The org itself: ``/api/v1/org`` (profile, logo, deletion) and ``/api/v1/orgs`` (my orgs,
another org), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest

from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, audit_entries, bearer
from tests.server.conftest import make_org
from tests.server.database import db_id, rows, scalar, state
from tests.server.principals import People, Person

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)
GIF = b"GIF89a" + bytes(64)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(64)


def upload(client: Client, person: Person, data: bytes, content_type: str = "image/png") -> Any:
    return client.put(
        "/api/v1/org/logo",
        files={"file": ("logo", io.BytesIO(data), content_type)},
        headers=person.headers,
    )


# -- profile -----------------------------------------------------------------------------------


def test_every_member_reads_the_orgs_profile(
    client: Client, people: People, org: IssuedKey
) -> None:
    member = people.add(Role.MEMBER)

    response = client.get("/api/v1/org", headers=member.headers)

    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["id"] == str(org.org_id)
    assert profile["name"] == "acme"
    assert profile["slug"] == "acme"
    assert profile["plan"] == "free"
    assert profile["region"] == "default"
    assert profile["logo_url"] is None
    assert profile["logo_uploaded"] is False
    assert profile["created_at"]


def test_an_admin_renames_the_org_and_changes_its_slug_and_the_change_is_audited(
    client: Client, admin: Person
) -> None:
    response = client.patch(
        "/api/v1/org",
        json={"name": "  Acme Robotics ", "slug": "acme-robotics"},
        headers=admin.headers,
    )

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Acme Robotics"
    assert response.json()["slug"] == "acme-robotics"
    assert response.json()["updated_at"] is not None
    [entry] = audit_entries(client, admin.headers, action="org.updated")
    assert entry["actor_type"] == "user"
    assert entry["actor_id"] == str(admin.user_id)
    assert entry["before"] == {"name": "acme", "slug": "acme"}
    assert entry["after"] == {"name": "Acme Robotics", "slug": "acme-robotics"}


def test_a_slug_another_org_has_is_refused_and_nothing_changes(
    client: Client, admin: Person, migrated_url: str
) -> None:
    make_org(migrated_url, "globex")
    before = state(migrated_url)

    response = client.patch(
        "/api/v1/org", json={"name": "Globex too", "slug": "globex"}, headers=admin.headers
    )

    assert_problem(response, 409, "slug_taken")
    assert state(migrated_url) == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": ""}, "invalid_name"),
        ({"name": "   "}, "invalid_name"),
        ({"name": "x" * 201}, "invalid_name"),
        ({"name": "bad\x00name"}, "invalid_name"),
        ({"slug": "Acme"}, "invalid_slug"),
        ({"slug": "-acme"}, "invalid_slug"),
        ({"slug": "acme_corp"}, "invalid_slug"),
        ({"slug": "a" * 65}, "invalid_slug"),
        ({"logo_url": "http://cdn.example/logo.png"}, "invalid_logo_url"),
        ({"logo_url": "javascript:alert(1)"}, "invalid_logo_url"),
        ({"logo_url": "https:///logo.png"}, "invalid_logo_url"),
        ({"logo_url": "https://user:pw@cdn.example/logo.png"}, "invalid_logo_url"),
        ({"logo_url": "https://cdn.example/a b.png"}, "invalid_logo_url"),
        ({"logo_url": "https://cdn.example/" + "a" * 2048}, "invalid_logo_url"),
        ({"name": 42}, "validation_error"),
        ({"colour": "red"}, "validation_error"),
    ],
)
def test_bad_profile_values_are_refused_precisely_and_nothing_changes(
    client: Client, owner: Person, migrated_url: str, body: dict[str, Any], code: str
) -> None:
    before = state(migrated_url)

    response = client.patch("/api/v1/org", json={"name": "Renamed", **body}, headers=owner.headers)

    assert_problem(response, 400, code)
    assert state(migrated_url) == before


def test_only_an_owner_changes_the_plan_or_the_region(
    client: Client, owner: Person, admin: Person, migrated_url: str
) -> None:
    before = state(migrated_url)
    for change in ({"plan": "team"}, {"region": "eu"}):
        assert_problem(
            client.patch("/api/v1/org", json=change, headers=admin.headers), 403, "owner_required"
        )
    assert state(migrated_url) == before

    response = client.patch(
        "/api/v1/org", json={"plan": "enterprise", "region": "eu"}, headers=owner.headers
    )

    assert response.status_code == 200, response.text
    assert (response.json()["plan"], response.json()["region"]) == ("enterprise", "eu")
    unchanged = client.patch(
        "/api/v1/org", json={"name": "Acme", "plan": "enterprise"}, headers=admin.headers
    )
    assert unchanged.status_code == 200, unchanged.text  # sending the current plan back is fine


@pytest.mark.parametrize(
    ("body", "code"),
    [({"plan": "platinum"}, "invalid_plan"), ({"region": "mars"}, "invalid_region")],
)
def test_plans_and_regions_come_from_a_fixed_list(
    client: Client, owner: Person, body: dict[str, str], code: str
) -> None:
    assert_problem(client.patch("/api/v1/org", json=body, headers=owner.headers), 400, code)


def test_a_member_cannot_change_the_profile(client: Client, people: People) -> None:
    member = people.add(Role.MEMBER)

    response = client.patch("/api/v1/org", json={"name": "Mine"}, headers=member.headers)

    assert_problem(response, 403, "permission_denied")


def test_an_oversized_body_is_refused_before_it_is_read(
    client: Client, owner: Person, migrated_url: str
) -> None:
    before = state(migrated_url)

    response = client.patch("/api/v1/org", json={"name": "x" * (70 * 1024)}, headers=owner.headers)

    assert_problem(response, 413, "payload_too_large")
    assert state(migrated_url) == before


def test_malformed_json_is_refused(client: Client, owner: Person, migrated_url: str) -> None:
    before = state(migrated_url)

    response = client.patch(
        "/api/v1/org",
        content=b'{"name": ',
        headers={**owner.headers, "Content-Type": "application/json"},
    )

    assert_problem(response, 400, "malformed_json")  # the body is not JSON at all
    assert state(migrated_url) == before


# -- logo --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
def test_an_uploaded_logo_is_served_with_the_type_its_bytes_show(
    client: Client, admin: Person, data: bytes, content_type: str
) -> None:
    uploaded = upload(client, admin, data, content_type="application/octet-stream")

    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["logo_uploaded"] is True
    served = client.get("/api/v1/org/logo", headers=admin.headers)
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == content_type
    assert served.headers["x-content-type-options"] == "nosniff"


def test_a_logo_is_judged_by_its_bytes_not_by_the_type_the_client_claims(
    client: Client, admin: Person, migrated_url: str
) -> None:
    before = state(migrated_url)
    for data in (b"<svg onload='alert(1)'></svg>", b"<html><script>x</script>", b""):
        response = upload(client, admin, data, content_type="image/png")
        assert_problem(response, 415, "unsupported_logo_type")
    assert state(migrated_url) == before


@pytest.mark.parametrize("size", [256 * 1024 + 1, 2 * 1024 * 1024])
def test_a_logo_over_256_kib_is_refused(
    client: Client, admin: Person, migrated_url: str, size: int
) -> None:
    before = state(migrated_url)

    response = upload(client, admin, PNG + bytes(size - len(PNG)))

    assert_problem(response, 413, "logo_too_large")
    assert state(migrated_url) == before


def test_a_logo_of_exactly_256_kib_is_taken(client: Client, admin: Person) -> None:
    response = upload(client, admin, PNG + bytes(256 * 1024 - len(PNG)))

    assert response.status_code == 200, response.text


def test_a_logo_url_and_an_uploaded_logo_replace_each_other(client: Client, admin: Person) -> None:
    assert upload(client, admin, PNG).status_code == 200

    with_url = client.patch(
        "/api/v1/org", json={"logo_url": "https://cdn.example/acme.png"}, headers=admin.headers
    )

    assert with_url.json()["logo_url"] == "https://cdn.example/acme.png"
    assert with_url.json()["logo_uploaded"] is False
    assert_problem(client.get("/api/v1/org/logo", headers=admin.headers), 404, "logo_not_found")
    uploaded = upload(client, admin, GIF)
    assert (uploaded.json()["logo_url"], uploaded.json()["logo_uploaded"]) == (None, True)


def test_removing_the_logo_removes_it_and_is_audited(client: Client, admin: Person) -> None:
    upload(client, admin, PNG)

    response = client.delete("/api/v1/org/logo", headers=admin.headers)

    assert response.status_code == 204
    assert_problem(client.get("/api/v1/org/logo", headers=admin.headers), 404, "logo_not_found")
    assert client.get("/api/v1/org", headers=admin.headers).json()["logo_uploaded"] is False
    actions = [entry["action"] for entry in audit_entries(client, admin.headers, action="org.")]
    assert actions == ["org.logo_removed", "org.logo_uploaded"]
    assert client.delete("/api/v1/org/logo", headers=admin.headers).status_code == 204


def test_a_malformed_multipart_body_is_refused(client: Client, admin: Person) -> None:
    response = client.put(
        "/api/v1/org/logo",
        content=b"--boundary\r\nnot a part",
        headers={**admin.headers, "Content-Type": "multipart/form-data; boundary=boundary"},
    )

    assert response.status_code == 400, response.text


# -- my orgs, another org ---------------------------------------------------------------------


def test_a_person_lists_the_orgs_they_belong_to_with_their_role(
    client: Client, owner: Person, migrated_url: str
) -> None:
    globex = make_org(migrated_url, "globex")
    make_org(migrated_url, "initech")  # not theirs
    People(migrated_url, globex.org_id).add(Role.VIEWER, email=owner.email)

    response = client.get("/api/v1/orgs", headers=owner.headers)

    assert response.status_code == 200, response.text
    assert [(org["slug"], org["role"]) for org in response.json()["items"]] == [
        ("acme", "owner"),
        ("globex", "viewer"),
    ]


def test_a_signed_in_person_creates_another_org_and_owns_it(
    client: Client, owner: Person, migrated_url: str
) -> None:
    response = client.post("/api/v1/orgs", json={"name": "Acme Labs"}, headers=owner.headers)

    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["name"], created["slug"], created["plan"]) == ("Acme Labs", "acme-labs", "free")
    mine = client.get("/api/v1/orgs", headers=owner.headers).json()["items"]
    assert ("acme-labs", "owner") in [(org["slug"], org["role"]) for org in mine]
    org_id = uuid.UUID(created["id"])
    audited = rows(
        migrated_url,
        "SELECT action, target_id FROM audit_log WHERE org_id = :org ORDER BY action",
        org=db_id(migrated_url, org_id),
    )
    assert [tuple(entry) for entry in audited] == [
        ("member.added", str(owner.user_id)),
        ("org.created", str(org_id)),
    ]


def test_another_org_with_a_taken_slug_is_refused_and_nothing_changes(
    client: Client, owner: Person, migrated_url: str
) -> None:
    make_org(migrated_url, "globex")
    before = state(migrated_url)

    response = client.post("/api/v1/orgs", json={"name": "Globex"}, headers=owner.headers)

    assert_problem(response, 409, "slug_taken")
    assert state(migrated_url) == before


def test_an_api_key_has_no_orgs_of_its_own(client: Client, org: IssuedKey) -> None:
    response = client.post("/api/v1/orgs", json={"name": "Keyed"}, headers=bearer(org.key))

    assert_problem(response, 403, "insufficient_scope")


# -- deleting the org ----------------------------------------------------------------------------


def test_deleting_the_org_needs_its_slug_as_confirmation(
    client: Client, owner: Person, migrated_url: str
) -> None:
    before = state(migrated_url)
    for body in (None, {"confirm": "not-acme"}):
        response = client.request("DELETE", "/api/v1/org", json=body, headers=owner.headers)
        assert_problem(response, 400, "confirmation_required")
    assert state(migrated_url) == before


def test_only_an_owner_deletes_the_org(client: Client, admin: Person, org: IssuedKey) -> None:
    by_admin = client.request(
        "DELETE", "/api/v1/org", json={"confirm": "acme"}, headers=admin.headers
    )
    by_key = client.request(
        "DELETE", "/api/v1/org", json={"confirm": "acme"}, headers=bearer(org.key)
    )

    assert_problem(by_admin, 403, "permission_denied")
    assert_problem(by_key, 403, "insufficient_scope")


def test_deleting_the_org_removes_every_row_of_it_and_nothing_of_other_orgs(
    client: Client,
    owner: Person,
    people: People,
    migrated_url: str,
    org: IssuedKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = people.add(Role.MEMBER)
    team = people.team("platform", member)
    for response in (
        client.put(f"/api/v1/teams/{team}/members/{owner.user_id}", headers=owner.headers),
        upload(client, owner, PNG),
        client.post(
            "/api/v1/api-keys", json={"name": "ci", "scopes": ["ingest"]}, headers=owner.headers
        ),
    ):
        assert response.status_code in {200, 201}, response.text
    assert scalar(migrated_url, "SELECT count(*) FROM audit_log") == 3
    globex = make_org(migrated_url, "globex")
    People(migrated_url, globex.org_id).add(Role.OWNER, email=owner.email)
    other_org_rows = {
        table: [row for row in found if str(globex.org_id) in row or globex.org_id.hex in row]
        for table, found in state(migrated_url).items()
    }

    response = client.request(
        "DELETE", "/api/v1/org", json={"confirm": "acme"}, headers=owner.headers
    )

    assert response.status_code == 204, response.text
    after = state(migrated_url)
    left = [
        (table, row)
        for table, found in after.items()
        for row in found
        if str(org.org_id) in row or org.org_id.hex in row
    ]
    assert left == []
    for table, theirs in other_org_rows.items():
        assert set(theirs) <= set(after[table]), table
    assert len(after["users"]) == 2  # accounts outlive the org
    assert any(
        "org deleted" in str(record.msg) and str(org.org_id) in str(record.msg)
        for record in caplog.records
    )  # the hub's own log keeps a line of it
    assert_problem(client.get("/api/v1/org", headers=owner.headers), 401, "not_a_member")
    assert_problem(client.get("/api/v1/org", headers=bearer(org.key)), 401, "invalid_api_key")


def test_the_routes_are_in_the_openapi_schema_and_accepting_an_invitation_needs_no_credential(
    client: Client,
) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]

    for path, method in [
        ("/api/v1/org", "patch"),
        ("/api/v1/org/logo", "put"),
        ("/api/v1/orgs", "post"),
        ("/api/v1/members/{user_id}", "patch"),
        ("/api/v1/invitations", "post"),
        ("/api/v1/teams/{team_id}/members/{user_id}", "put"),
        ("/api/v1/api-keys/{key_id}/rotate", "post"),
        ("/api/v1/audit", "get"),
    ]:
        assert paths[path][method]["summary"], (path, method)
    assert paths["/api/v1/invitations/accept"]["post"]["security"] == [{}]
    assert "multipart/form-data" in paths["/api/v1/org/logo"]["put"]["requestBody"]["content"]
