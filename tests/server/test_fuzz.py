"""Property-based: every route's query parameters and JSON bodies, generated from the hub's own
OpenAPI schema by schemathesis, sent to a served hub on SQLite and on PostgreSQL. No answer is
a 5xx, every error is problem+json, and every answer's status and content type are declared
for its route in the schema.

Each operation gets cases that fit its schema and cases that break it (schemathesis' positive
and negative modes); in some, one query parameter or body field is swapped for a hostile value
(NUL and other control characters, moments no datetime holds in UTC, numbers past any column,
huge text, JSON nested past the limit). Routes a key may call get the org's admin key; routes
only a person may call get an owner's token (a fresh owner per operation, since some routes end
the caller's session); public routes get nothing.

Bounded and repeatable: ``EXAMPLES`` cases per operation, the same ones every run
(derandomized), so the test takes well under two minutes on a 2-core machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from agentops_server import Settings, create_app
from agentops_server.auth.guards import permission_of
from agentops_server.security.permissions import SCOPE_PERMISSIONS, Permission, Role, Scope
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import bearer
from tests.server.principals import People
from tests.server.routes import endpoints
from tests.server.servers import serving

EXAMPLES = 15
"""Cases per operation."""
UNLIMITED = "1000000/minute"


def nested(depth: int) -> list[Any]:
    """A list nesting ``depth`` lists."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_TEXT = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "\x01",
        "\x1b[31m",
        "\x7f",
        "\u0085",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "x" * 5000,
        str(10**30),
        "-1",
    ]
)
"""Text that no column, no datetime or no sane field holds."""
HOSTILE = st.one_of(
    HOSTILE_TEXT,
    st.sampled_from([10**30, -(10**30), 2**63, 1e308, -1, [], {}, None, True]),
    st.integers(min_value=65, max_value=400).map(nested),
)
"""A hostile JSON value."""


@dataclasses.dataclass(frozen=True)
class FuzzedHub:
    """A served hub, its OpenAPI schema, and who calls its routes."""

    url: str
    schema: Any
    app: Litestar
    key: IssuedKey
    people: People


@pytest.fixture
def hub(settings: Settings, org: IssuedKey, people: People) -> Iterator[FuzzedHub]:
    """The hub with limits high enough that fuzzing never meets them, served over HTTP."""
    limits = dict.fromkeys(
        (
            "rate_limit_org",
            "rate_limit_key",
            "rate_limit_login",
            "rate_limit_login_ip",
            "rate_limit_auth_failures",
        ),
        UNLIMITED,
    )
    app = create_app(dataclasses.replace(settings, log_level="WARNING", **limits))
    with serving(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/schema/openapi.json")
        yield FuzzedHub(url, schema, app, org, people)


@pytest.mark.timeout(300)  # every route's cases: 140 s on a loaded 2-core machine
def test_no_5xx_every_answer_declared_every_error_a_problem(hub: FuzzedHub) -> None:
    permissions = {
        (method.lower(), path): permission_of(handler)
        for method, path, handler in endpoints(hub.app, filled=False)
    }
    operations = [result.ok() for result in hub.schema.get_all_operations()]
    failures: list[str] = []

    for operation in operations:
        permission = permissions[(operation.method.lower(), operation.path)]
        failures += fuzz(operation, hub.url, credentials(hub, permission))

    fuzzed = {(operation.method.lower(), operation.path) for operation in operations}
    assert fuzzed == {route for route in permissions if not route[1].startswith("/schema")}
    assert failures == []


def credentials(hub: FuzzedHub, permission: Permission | None) -> dict[str, str]:
    """What a caller of a route needing ``permission`` sends."""
    if permission is None:
        return {}
    if permission in SCOPE_PERMISSIONS[Scope.ADMIN]:
        return bearer(hub.key.key)
    return hub.people.add(Role.OWNER).headers


def fuzz(operation: APIOperation, url: str, headers: dict[str, str]) -> list[str]:
    """``EXAMPLES`` cases of ``operation`` sent to the hub at ``url``; what each answer that
    breaks the rules was, and to what."""
    failures: list[str] = []
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases, data=st.data())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Any, data: st.DataObject) -> None:
        make_hostile(case, data)
        response = case.call(base_url=url, headers=headers)
        if problem := judged(response) or undeclared(case, response):
            failures.append(
                f"{operation.method.upper()} {operation.path}: {problem}; "
                f"query={str(case.query)[:300]} body={str(case.body)[:300]}"
            )

    send()
    return failures


def make_hostile(case: Any, data: st.DataObject) -> None:
    """Maybe swap one query parameter, and maybe one body field, for a hostile value."""
    if isinstance(case.query, dict) and case.query and data.draw(st.booleans()):
        case.query[data.draw(st.sampled_from(sorted(case.query)))] = data.draw(HOSTILE_TEXT)
    if isinstance(case.body, dict) and case.body and data.draw(st.booleans()):
        case.body[data.draw(st.sampled_from(sorted(case.body)))] = data.draw(HOSTILE)


def undeclared(case: Any, response: Any) -> str | None:
    """What of ``response`` the schema does not declare for its route (its status code or its
    content type), if the hub answered it."""
    if "x-content-type-options" not in {name.lower() for name in response.headers}:
        return None  # answered by the HTTP server before the hub (see judged)
    try:
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance])
    except FailureGroup as failures:
        return "undeclared: " + "; ".join(
            f"{failure.title}: {failure.message}".replace("\n", " ")[:200]
            for failure in failures.exceptions
        )
    return None


def judged(response: Any) -> str | None:
    """What is wrong with ``response``, if anything: a 5xx, or an error the hub answered that
    is not problem+json. (An HTTP server refusing a request before the hub sees it, such as a
    request line too long, answers without the hub's headers: only its status counts.)"""
    if response.status_code >= 500:
        return f"{response.status_code} {response.text[:300]}"
    headers = {name.lower(): values for name, values in response.headers.items()}
    from_the_hub = "x-content-type-options" in headers
    content_type = (headers.get("content-type") or [""])[0]
    if from_the_hub and response.status_code >= 400 and "problem+json" not in content_type:
        return f"{response.status_code} {content_type}: {response.text[:300]}"
    return None
