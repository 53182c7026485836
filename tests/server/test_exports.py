"""``GET /api/v1/exports/{runs,costs}.{csv,jsonl}``: streamed with the explorer's filters, and
in bounded memory for 100,000 rows (the hub's RSS measured in its own process); SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.telemetry.exports import COST_COLUMNS, RUN_COLUMNS
from tests.server.api import Client, assert_problem, bearer
from tests.server.database import direct_session
from tests.server.ingest_events import INGEST, batch, run_event, span_event
from tests.server.servers import hub_process

BULK_ROWS = 100_000
RSS_GROWTH_BOUND = 32 * 2**20
"""What streaming 100,000 runs may add to the hub's resident memory: a fraction of what holding
them would (their CSV alone is ~10 MB; as Python rows, several times that). Measured: under
1 MiB on either database."""


def _ingest_sample(client: Client, auth: dict[str, str]) -> tuple[dict[str, object], ...]:
    weather = run_event(name="weather", agent="forecaster", tags=["eu"])
    billing = run_event(name="billing", agent="biller", status="error")
    events = [
        weather,
        billing,
        span_event(weather, name="ask"),
        span_event(weather, name="ask-again"),
        span_event(billing, name="lookup", kind="tool", llm=None),
    ]
    response = client.post(INGEST, json=batch(*events), headers=auth)
    assert response.status_code == 200, response.text
    return weather, billing


def test_runs_export_as_csv_and_jsonl_with_the_explorers_filters(
    client: Client, auth: dict[str, str]
) -> None:
    weather, _ = _ingest_sample(client, auth)

    response = client.get("/api/v1/exports/runs.csv", headers=auth)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="runs.csv"' in response.headers["content-disposition"]
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == list(RUN_COLUMNS)
    assert sorted(line[2] for line in lines[1:]) == ["billing", "weather"]

    response = client.get("/api/v1/exports/runs.jsonl", params={"tag": "eu"}, headers=auth)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    (only,) = [json.loads(line) for line in response.text.splitlines()]
    assert only["id"] == weather["id"]
    assert only["tags"] == ["eu"]
    assert only["agent"] == "forecaster"
    assert list(only) == list(RUN_COLUMNS)


def test_costs_export_one_row_per_llm_call_of_the_selected_runs(
    client: Client, auth: dict[str, str]
) -> None:
    weather, _ = _ingest_sample(client, auth)

    response = client.get("/api/v1/exports/costs.csv", headers=auth)
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == list(COST_COLUMNS)
    assert len(lines) == 3  # the header and the two LLM calls; the tool call has no cost row

    response = client.get("/api/v1/exports/costs.jsonl", params={"agent": "biller"}, headers=auth)
    assert response.text == ""
    response = client.get(
        "/api/v1/exports/costs.jsonl", params={"agent": "forecaster"}, headers=auth
    )
    calls = [json.loads(line) for line in response.text.splitlines()]
    assert {call["run_id"] for call in calls} == {weather["id"]}
    assert {call["model"] for call in calls} == {"gpt-4o"}
    assert all(call["input_tokens"] == 12 for call in calls)


def test_an_export_refuses_a_bad_filter_before_streaming(
    client: Client, auth: dict[str, str]
) -> None:
    response = client.get("/api/v1/exports/runs.csv", params={"q": "!!"}, headers=auth)
    assert_problem(response, 400, "validation_error")


def test_an_export_of_100000_runs_streams_in_bounded_memory(
    migrated_url: str, org: IssuedKey, tmp_path: Path
) -> None:
    _insert_runs(migrated_url, org.org_id, BULK_ROWS)
    environment = {"AGENTOPS_DATABASE_URL": migrated_url, "AGENTOPS_LOG_LEVEL": "WARNING"}
    with hub_process("--no-migrate", environment=environment) as hub:
        headers = bearer(org.key)
        with httpx.Client(base_url=hub.url, timeout=120) as http:
            small = http.get("/api/v1/exports/runs.csv", params={"agent": "a-0"}, headers=headers)
            assert small.text.count("\n") == BULK_ROWS // 10 + 1
            baseline = _rss(hub.process.pid)
            peak, lines = baseline, 0
            with http.stream("GET", "/api/v1/exports/runs.csv", headers=headers) as response:
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    lines += chunk.count(b"\n")
                    peak = max(peak, _rss(hub.process.pid))
    assert lines == BULK_ROWS + 1
    assert peak - baseline < RSS_GROWTH_BOUND, f"RSS grew {(peak - baseline) / 2**20:.1f} MiB"


def _rss(pid: int) -> int:
    """The process's resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _insert_runs(database_url: str, org_id: uuid.UUID, count: int) -> None:
    """``count`` finished runs of ten agents, made by one SQL statement."""
    with direct_session(database_url) as session:
        postgresql = session.get_bind().dialect.name == "postgresql"
        session.execute(
            text(_BULK_POSTGRESQL if postgresql else _BULK_SQLITE),
            {
                "org": str(org_id) if postgresql else org_id.hex,
                "count": count,
            },
        )
        session.commit()


_COLUMNS = (
    "org_id, id, agent, name, environment, status, started_at, ended_at, duration_ms, tags, "
    "metadata, input, output, span_count, error_count, input_tokens, output_tokens, "
    "cached_input_tokens, cache_write_tokens, reasoning_tokens, llm_calls, unpriced_calls, cost"
)
_BULK_POSTGRESQL = f"""
INSERT INTO runs ({_COLUMNS})
SELECT CAST(:org AS uuid), gen_random_uuid(), 'a-' || (i % 10), 'bulk-run-' || i, 'prod', 'ok',
       now() - i * interval '1 second', now() - i * interval '1 second' + interval '2 seconds',
       2000, '["bulk"]'::jsonb, '{{}}'::jsonb,
       jsonb_build_object('question', 'what is the weather in city ' || i), '"sunny"'::jsonb,
       3, 0, 120, 80, 0, 0, 0, 1, 0, 0.0012
FROM generate_series(1, :count) AS i
"""
_BULK_SQLITE = f"""
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO runs ({_COLUMNS})
SELECT :org, lower(hex(randomblob(16))), 'a-' || (i % 10), 'bulk-run-' || i, 'prod', 'ok',
       strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || i || ' seconds') || '.000000',
       strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || (i - 2) || ' seconds') || '.000000',
       2000, '["bulk"]', '{{}}', json_object('question', 'what is the weather in city ' || i),
       '"sunny"', 3, 0, 120, 80, 0, 0, 0, 1, 0, 0.0012
FROM n
"""
