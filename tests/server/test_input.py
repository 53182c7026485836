"""No input reaches a 500: text with NUL or control characters, moments outside what a datetime
holds, numbers outside what a column holds, deep or huge JSON, on SQLite and PostgreSQL. Each is
refused where the request is decoded, with the code of its kind (``agentops_server.values``),
and changes nothing. The findings of issue 17's probe are the first tests.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from agentops_server import Settings, create_app
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.accounts import AUTH, unique_email
from tests.server.api import Client, assert_problem
from tests.server.database import state
from tests.server.principals import PASSWORD, Person
from tests.server.routes import PARAMETER, endpoints

OUT_OF_RANGE = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
"""Moments that parse, but are no datetime once moved to UTC."""
JSON_ROUTES = sorted(
    (method, path)
    for method, path, handler in endpoints(
        create_app(Settings(database_url="sqlite:///:memory:")), filled=False
    )
    if ("data" in handler.parsed_fn_signature.parameters or path.startswith("/api/v1/ingest"))
    and path != "/api/v1/org/logo"
)
"""Every route that reads a JSON body (the ingest routes read theirs themselves; the logo upload
takes multipart)."""
ABSENT = str(uuid.UUID(int=1))


# -- the probe's findings --------------------------------------------------------------------


def test_a_display_name_with_nul_is_refused_and_changes_nothing(
    client: Client, owner: Person, migrated_url: str
) -> None:
    before = state(migrated_url)

    response = client.patch(f"{AUTH}/me", json={"name": "a\u0000b"}, headers=owner.headers)

    assert_problem(response, 400, "invalid_name")
    assert state(migrated_url) == before


def test_a_filter_with_nul_is_refused(client: Client, auth: dict[str, str]) -> None:
    response = client.get("/api/v1/runs?agent=%00", headers=auth)

    assert_problem(response, 400, "invalid_text")


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/runs", "started_after"),
        ("/api/v1/runs", "started_before"),
        ("/api/v1/audit", "since"),
        ("/api/v1/audit", "until"),
    ],
)
def test_a_moment_no_datetime_holds_in_utc_is_refused(
    client: Client, auth: dict[str, str], path: str, parameter: str, moment: str
) -> None:
    response = client.get(path, params={parameter: moment}, headers=auth)

    assert_problem(response, 400, "invalid_timestamp")


@pytest.mark.parametrize("depth", [1_000, 10_000])
def test_sign_up_refuses_a_body_nested_too_deep(client: Client, depth: int) -> None:
    response = client.post(
        f"{AUTH}/signup", content=nested(depth), headers={"content-type": "application/json"}
    )

    assert_problem(response, 400, "json_too_deep")


# -- the same rules on every route -----------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES, ids=[f"{m} {p}" for m, p in JSON_ROUTES])
def test_every_json_route_refuses_a_body_nested_too_deep(
    client: Client, owner: Person, method: str, path: str
) -> None:
    for depth in (65, 10_000):
        response = client.request(
            method,
            PARAMETER.sub(ABSENT, path),
            content=nested(depth),
            headers=owner.headers | {"content-type": "application/json"},
        )

        assert_problem(response, 400, "json_too_deep")


def test_a_body_nested_as_deep_as_allowed_is_decoded(client: Client, owner: Person) -> None:
    response = client.patch(
        f"{AUTH}/me",
        content=b'{"name": "Olga", "x": ' + nested(63) + b"}",
        headers=owner.headers | {"content-type": "application/json"},
    )

    assert_problem(response, 400, "validation_error")  # decoded: then `x` is no field


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/teams", {"name": "ops\u0007"}),
        ("/api/v1/api-keys", {"name": "ci\u0000", "scopes": ["read"]}),
        ("/api/v1/orgs", {"name": "Acme\u0085 Labs"}),
        ("/api/v1/invitations", {"email": "nina\u0000@example.com", "role": "member"}),
    ],
)
def test_names_and_texts_with_control_characters_are_refused_in_bodies(
    client: Client, owner: Person, migrated_url: str, path: str, body: dict[str, Any]
) -> None:
    before = state(migrated_url)

    response = client.post(path, json=body, headers=owner.headers)

    code = "invalid_text" if path == "/api/v1/invitations" else "invalid_name"
    assert_problem(response, 400, code)
    assert state(migrated_url) == before


@pytest.mark.parametrize(
    "params",
    [{"target_type": "member\u0000"}, {"action": "member.\u0001"}, {"cursor": "x\u0000"}],
    ids=["nul", "control", "cursor"],
)
def test_audit_filters_with_control_characters_are_refused(
    client: Client, auth: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get("/api/v1/audit", params=params, headers=auth)

    assert_problem(response, 400, "invalid_text")


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_a_forged_cursor_with_a_moment_no_datetime_holds_is_refused(
    client: Client, auth: dict[str, str], moment: str
) -> None:
    cursor = base64.urlsafe_b64encode(f"{moment}|{uuid.uuid4().hex}".encode()).decode()

    runs = client.get("/api/v1/runs", params={"cursor": cursor}, headers=auth)
    audit = client.get("/api/v1/audit", params={"cursor": cursor}, headers=auth)

    assert_problem(runs, 400, "validation_error")
    assert_problem(audit, 400, "invalid_cursor")


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_a_key_expiring_at_a_moment_no_datetime_holds_is_refused(
    client: Client, owner: Person, moment: str
) -> None:
    response = client.post(
        "/api/v1/api-keys",
        json={"name": "ci", "scopes": ["read"], "expires_at": moment},
        headers=owner.headers,
    )

    assert_problem(response, 400, "invalid_timestamp")


def test_numbers_beyond_what_a_column_holds_are_refused(
    client: Client, owner: Person, org: IssuedKey
) -> None:
    huge = 10**30
    key_for_days = client.post(
        "/api/v1/api-keys",
        json={"name": "ci", "scopes": ["read"], "expires_in_days": huge},
        headers=owner.headers,
    )
    grace = client.post(
        f"/api/v1/api-keys/{org.key_id}/rotate", json={"grace_seconds": huge}, headers=owner.headers
    )
    page = client.get("/api/v1/runs", params={"limit": str(huge)}, headers=owner.headers)

    for response in (key_for_days, grace, page):
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


def test_huge_texts_and_bodies_are_refused(client: Client, owner: Person) -> None:
    long_email = client.post(
        f"{AUTH}/login", json={"email": "a" * 5000 + "@example.com", "password": PASSWORD}
    )
    huge_body = client.patch(f"{AUTH}/me", json={"name": "x" * 100_000}, headers=owner.headers)

    assert_problem(long_email, 400, "invalid_text")
    assert_problem(huge_body, 413, "payload_too_large")


def test_sign_up_with_a_name_holding_nul_makes_nothing(client: Client, migrated_url: str) -> None:
    before = state(migrated_url)

    response = client.post(
        f"{AUTH}/signup",
        json={"email": unique_email(), "password": PASSWORD, "org_name": "Acme", "name": "a\x00"},
    )

    assert_problem(response, 400, "invalid_name")
    assert state(migrated_url) == before


def test_a_lone_surrogate_never_arrives_through_a_body_or_a_query(
    client: Client, owner: Person, auth: dict[str, str]
) -> None:
    body = client.patch(
        f"{AUTH}/me",
        content=b'{"name": "\\ud800"}',
        headers=owner.headers | {"content-type": "application/json"},
    )
    query = client.get("/api/v1/runs?agent=%ED%A0%80", headers=auth)

    assert_problem(body, 400, "malformed_json")  # the JSON decoder refuses it
    assert query.status_code == 200, query.text  # invalid UTF-8 is decoded as U+FFFD


def test_accepting_with_a_name_holding_control_characters_is_refused(client: Client) -> None:
    response = client.post(
        "/api/v1/invitations/accept",
        json={"token": "inv_x", "name": "Nina\x1b[31m", "password": PASSWORD},
    )

    assert_problem(response, 400, "invalid_name")


def nested(depth: int) -> bytes:
    """A JSON document nesting ``depth`` arrays."""
    return b"[" * depth + b"]" * depth


def test_the_json_routes_walked_above_are_the_apps() -> None:
    assert ("PATCH", "/api/v1/auth/me") in JSON_ROUTES
    assert ("POST", "/api/v1/ingest/batch") in JSON_ROUTES
    assert ("DELETE", "/api/v1/org") in JSON_ROUTES  # confirms with a body
    assert ("DELETE", "/api/v1/teams/{team_id}") not in JSON_ROUTES
