"""One error tree: a refusal's kind alone decides its status, wherever it is raised, and the
OpenAPI schema declares every route's problems as application/problem+json."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.api.problems import problem_details_plugin
from agentops_server.refusals import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    RateLimited,
    Refused,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unsupported,
    UpstreamFailed,
)

KINDS: list[tuple[type[Refused], int]] = [
    (Refused, 400),
    (Invalid, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (TooLarge, 413),
    (Unsupported, 415),
    (RateLimited, 429),
    (UpstreamFailed, 502),
    (Unavailable, 503),
]


@pytest.mark.parametrize(("kind", "status"), KINDS)
def test_a_refusal_is_answered_with_its_kinds_status_code_detail_and_headers(
    kind: type[Refused], status: int
) -> None:
    @get("/thing", sync_to_thread=False)
    def thing() -> None:
        raise kind("some_code", "What to do.", headers={"Retry-After": "3"}, field=7)

    with TestClient(Litestar([thing], plugins=[problem_details_plugin()])) as client:
        response = client.get("/thing")

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "3"
    assert response.json() | {"type": None, "title": None} == {
        "type": None,
        "title": None,
        "status": status,
        "code": "some_code",
        "detail": "What to do.",
        "field": 7,
    }


def test_a_subclass_naming_its_code_keeps_its_kinds_status() -> None:
    class SlugTaken(Conflict):
        def __init__(self) -> None:
            super().__init__("slug_taken", "Taken.")

    @get("/thing", sync_to_thread=False)
    def thing() -> None:
        raise SlugTaken

    with TestClient(Litestar([thing], plugins=[problem_details_plugin()])) as client:
        assert client.get("/thing").status_code == 409


def test_every_api_route_declares_its_problems_with_the_problem_schema(tmp_path: Any) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}"))
    schema = app.openapi_schema.to_schema()
    problem = schema["components"]["schemas"]["ProblemBody"]
    assert {"code", "status", "detail"} <= set(problem["required"])

    for path, item in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            statuses = {
                int(status)
                for status, answer in operation["responses"].items()
                if "application/problem+json" in answer.get("content", {})
            }
            assert {400, 500} <= statuses, f"{method.upper()} {path}: {sorted(statuses)}"
            if operation.get("security") != [{}]:  # a guarded route
                assert {401, 403, 429} <= statuses, f"{method.upper()} {path}"
