"""``agentops-hub demo --seed``: a realistic org made through the API, every page with data."""

from __future__ import annotations

import datetime as dt

import httpx

from agentops_server.demo_seed import AGENTS, seed_org
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.ingest_events import rows

NOW = dt.datetime(2026, 12, 7, 15, 30, tzinfo=dt.UTC)


def test_the_seed_fills_the_org_through_the_api(
    hub_url: str, org: IssuedKey, migrated_url: str
) -> None:
    with httpx.Client(
        base_url=hub_url, headers={"Authorization": f"Bearer {org.key}"}, timeout=60
    ) as client:
        report = seed_org(client, days=3, runs_per_day=10, now=NOW)

        agents = client.get("/api/v1/agents", params={"limit": 100}).json()["items"]
        approvals = client.get("/api/v1/approvals", params={"state": "pending"}).json()["items"]
        budgets = client.get("/api/v1/budgets").json()["items"]
        controls = client.get("/api/v1/controls").json()["controls"]
        policy = client.get("/api/v1/policies/effective").json()

    stored_runs = rows(migrated_url, "runs", org.org_id)
    stored_spans = rows(migrated_url, "spans", org.org_id)
    assert report.runs == len(stored_runs) > 0
    assert report.spans == len(stored_spans)
    oldest = min(run["started_at"] for run in stored_runs)
    assert (NOW.replace(tzinfo=None) - oldest.replace(tzinfo=None)) > dt.timedelta(days=2)
    assert {run["status"] for run in stored_runs} <= {"ok", "error"}
    llm_calls = [span for span in stored_spans if span["kind"] == "llm"]
    assert llm_calls
    assert all(span["cost"] is not None for span in llm_calls), "the hub priced every call"
    assert {agent["name"] for agent in agents} == {name for name, *_ in AGENTS}
    assert [a["id"] for a in approvals] == [report.approval_id]
    assert len(budgets) == report.budgets == 3
    assert [(c["scope"]["value"], c["state"]) for c in controls] == [
        (report.paused_agent, "paused")
    ]
    assert policy["policy"]["version"] == report.policy_version


def test_the_same_seed_gives_the_same_runs(hub_url: str, org: IssuedKey) -> None:
    with httpx.Client(
        base_url=hub_url, headers={"Authorization": f"Bearer {org.key}"}, timeout=60
    ) as client:
        first = seed_org(client, days=2, runs_per_day=5, now=NOW, seed=3)
        second = seed_org(client, days=2, runs_per_day=5, now=NOW, seed=3)

    assert (first.runs, first.spans) == (second.runs, second.spans)
