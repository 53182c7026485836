from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from agentops_sdk import __version__
from agentops_server import Settings, create_app


def test_health_reports_ok_and_the_version(client: TestClient[Litestar]) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


def test_ready_when_the_database_is_migrated(client: TestClient[Litestar]) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_not_ready_while_migrations_are_pending(database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "migrations_pending"


def test_openapi_schema_is_served_without_pages_that_load_remote_assets(
    client: TestClient[Litestar],
) -> None:
    schema = client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "AgentOps Hub"
    page = client.get("/schema")
    assert "cdn" not in page.text.lower()


def test_unknown_route_is_a_problem_with_a_code(client: TestClient[Litestar]) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "not_found"
