"""``GET /api/v1/agents`` and ``GET /api/v1/agents/{id}``, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, bearer
from tests.server.conftest import make_org
from tests.server.ingest_events import T0
from tests.server.principals import limited_key
from tests.server.reading import seeded

DAY = dt.timedelta(days=1)

UNKNOWN_ID = "0190c0de-0000-7000-8000-00000000abcd"
"""An id no row has (fixed, so every pytest-xdist worker collects the same tests)."""


def test_agents_are_listed_by_name_with_first_and_last_seen_and_run_counts(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        triage = rows.agent("triage", first_seen_at=T0, last_seen_at=T0 + 2 * DAY)
        billing = rows.agent("billing", first_seen_at=T0 + DAY, last_seen_at=T0 + DAY)
        idle = rows.agent("archivist", first_seen_at=T0, last_seen_at=T0)
        for day in range(3):
            rows.run(agent="triage", started_at=T0 + day * DAY)
        rows.run(agent="billing", started_at=T0 + DAY)

    response = client.get("/api/v1/agents", headers=auth)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [
            {
                "id": str(idle.id),
                "name": "archivist",
                "first_seen_at": "2026-11-01T12:00:00Z",
                "last_seen_at": "2026-11-01T12:00:00Z",
                "run_count": 0,
            },
            {
                "id": str(billing.id),
                "name": "billing",
                "first_seen_at": "2026-11-02T12:00:00Z",
                "last_seen_at": "2026-11-02T12:00:00Z",
                "run_count": 1,
            },
            {
                "id": str(triage.id),
                "name": "triage",
                "first_seen_at": "2026-11-01T12:00:00Z",
                "last_seen_at": "2026-11-03T12:00:00Z",
                "run_count": 3,
            },
        ]
    }


def test_one_agent_has_its_first_and_last_seen_and_run_count(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        agent = rows.agent("triage", first_seen_at=T0, last_seen_at=T0 + DAY)
        rows.run(agent="triage", started_at=T0)
        rows.run(agent="triage", started_at=T0 + DAY)
        rows.run(agent="billing", started_at=T0)

    response = client.get(f"/api/v1/agents/{agent.id}", headers=auth)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": str(agent.id),
        "name": "triage",
        "first_seen_at": "2026-11-01T12:00:00Z",
        "last_seen_at": "2026-11-02T12:00:00Z",
        "run_count": 2,
    }


def test_an_org_without_agents_lists_none(client: Client, auth: dict[str, str]) -> None:
    assert client.get("/api/v1/agents", headers=auth).json() == {"items": []}


@pytest.mark.parametrize("agent_id", [UNKNOWN_ID, "not-a-uuid"])
def test_unknown_agent_is_agent_not_found(
    client: Client, auth: dict[str, str], agent_id: str
) -> None:
    response = client.get(f"/api/v1/agents/{agent_id}", headers=auth)

    assert_problem(response, 404, "agent_not_found")


def test_another_orgs_key_cannot_list_or_fetch_agents_or_count_their_runs(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    other = make_org(migrated_url, "globex")
    other_auth = bearer(other.key)
    with seeded(migrated_url, org.org_id) as rows:
        ours = rows.agent("triage", first_seen_at=T0, last_seen_at=T0)
        rows.run(agent="triage")
    with seeded(migrated_url, other.org_id) as rows:
        theirs = rows.agent("triage", first_seen_at=T0, last_seen_at=T0)
        for minute in range(2):
            rows.run(agent="triage", started_at=T0 + dt.timedelta(minutes=minute))

    listed = client.get("/api/v1/agents", headers=other_auth).json()["items"]

    assert [(a["id"], a["run_count"]) for a in listed] == [(str(theirs.id), 2)]
    response = client.get(f"/api/v1/agents/{ours.id}", headers=other_auth)
    assert_problem(response, 404, "agent_not_found")
    assert client.get(f"/api/v1/agents/{ours.id}", headers=auth).json()["run_count"] == 1


@pytest.mark.parametrize("path", ["/api/v1/agents", f"/api/v1/agents/{UNKNOWN_ID}"])
def test_a_key_without_the_read_scope_is_refused(
    client: Client, migrated_url: str, org: IssuedKey, path: str
) -> None:
    ingest_only = limited_key(migrated_url, org.org_id, scopes=["ingest"])

    response = client.get(path, headers=bearer(ingest_only.key))

    assert_problem(response, 403, "insufficient_scope")


def test_openapi_schema_describes_the_agent_responses(client: Client) -> None:
    schema = client.get("/schema/openapi.json").json()

    assert {"/api/v1/agents", "/api/v1/agents/{agent_id}"} <= set(schema["paths"])
    summary = schema["components"]["schemas"]["AgentSummary"]
    assert set(summary["properties"]) == {
        "id",
        "name",
        "first_seen_at",
        "last_seen_at",
        "run_count",
    }
