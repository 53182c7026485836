"""Authorisation: every route of the app, called by every role and every key scope, against the
permission matrix. A new route without a guard (or an explicit ``PUBLIC``) fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

from agentops_server.auth.guards import permission_of
from agentops_server.security.permissions import (
    ROLE_PERMISSIONS,
    SCOPE_PERMISSIONS,
    Permission,
    Role,
    Scope,
)
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, bearer
from tests.server.principals import People, limited_key
from tests.server.routes import endpoints

OPEN_OUTSIDE_THE_API = re.compile(r"^/(health|ready|schema)")
DENIED = {"permission_denied", "insufficient_scope"}
MATRIX_DOC = Path(__file__).parents[2] / "docs" / "permissions.md"


def call(client: Client, method: str, path: str, headers: dict[str, str]) -> Any:
    body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}
    return client.request(method, path, headers=headers, **body)


def code_of(response: Any) -> str | None:
    try:
        return response.json().get("code")
    except ValueError:
        return None


def misjudged_routes(
    app: Litestar,
    client: Client,
    caller: Callable[[], dict[str, str]],
    granted: frozenset[Permission],
) -> list[str]:
    """Every guarded route, called by a fresh ``caller`` (some routes end the caller's session
    or membership) holding the permissions ``granted``, that lets in a caller it should refuse,
    refuses one it should let in, or does not know them."""
    wrong: list[str] = []
    for method, path, handler in endpoints(app):
        permission = permission_of(handler)
        if permission is None:
            continue
        response = call(client, method, path, caller())
        allowed = permission in granted
        if allowed == (code_of(response) in DENIED) or response.status_code == 401:
            wrong.append(
                f"{method} {path} [{permission}]: {response.status_code} {code_of(response)}"
            )
    return wrong


def test_every_api_route_is_guarded_by_one_permission_or_declared_public(app: Litestar) -> None:
    unguarded = [
        f"{method} {path}"
        for method, path, handler in endpoints(app)
        if not OPEN_OUTSIDE_THE_API.match(path)
        and permission_of(handler) is None
        and not handler.opt.get("public")
    ]

    assert unguarded == []


def test_every_guarded_route_refuses_a_caller_without_credentials(
    app: Litestar, client: Client
) -> None:
    let_in = [
        f"{method} {path}"
        for method, path, handler in endpoints(app)
        if permission_of(handler) is not None and call(client, method, path, {}).status_code != 401
    ]

    assert let_in == []


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_exactly_the_routes_its_permissions_allow(
    app: Litestar, client: Client, people: People, role: Role
) -> None:
    def new_member() -> dict[str, str]:
        return people.add(role).headers

    assert misjudged_routes(app, client, new_member, ROLE_PERMISSIONS[role]) == []


@pytest.mark.parametrize("scope", list(Scope))
def test_each_key_scope_reaches_exactly_the_routes_it_allows(
    app: Litestar, client: Client, migrated_url: str, org: IssuedKey, scope: Scope
) -> None:
    def new_key() -> dict[str, str]:
        return bearer(limited_key(migrated_url, org.org_id, scopes=[scope.value]).key)

    assert misjudged_routes(app, client, new_key, SCOPE_PERMISSIONS[scope]) == []


def test_the_documented_matrix_is_the_one_the_code_enforces() -> None:
    documented = documented_matrix()

    assert documented == {
        **{role.value: set(ROLE_PERMISSIONS[role]) for role in Role},
        **{f"key:{scope.value}": set(SCOPE_PERMISSIONS[scope]) for scope in Scope},
    }


def test_only_a_person_who_owns_the_org_may_manage_owners() -> None:
    holders = [role for role in Role if Permission.OWNERS_MANAGE in ROLE_PERMISSIONS[role]]

    assert holders == [Role.OWNER]
    assert all(Permission.OWNERS_MANAGE not in granted for granted in SCOPE_PERMISSIONS.values())
    assert all(Permission.ACCOUNT not in granted for granted in SCOPE_PERMISSIONS.values())


def test_viewers_and_read_keys_can_change_nothing() -> None:
    writes = {p for p in Permission if not p.value.endswith(":read")} - {Permission.ACCOUNT}

    assert ROLE_PERMISSIONS[Role.VIEWER] & writes == set()
    assert SCOPE_PERMISSIONS[Scope.READ] & writes == set()


def documented_matrix() -> dict[str, set[Permission]]:
    """docs/permissions.md's table: a row per permission, a column per role and key scope."""
    lines = [line for line in MATRIX_DOC.read_text().splitlines() if line.startswith("|")]
    header = [cell.strip().strip("`") for cell in lines[0].strip("|").split("|")]
    matrix: dict[str, set[Permission]] = {column: set() for column in header[1:]}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        permission = Permission(cells[0].strip("`"))
        for column, cell in zip(header[1:], cells[1:], strict=True):
            if cell == "✓":
                matrix[column].add(permission)
    return matrix
