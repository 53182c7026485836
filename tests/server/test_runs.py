"""``GET /api/v1/runs`` and ``GET /api/v1/runs/{id}``, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import pytest

from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.telemetry.run_detail import MAX_TREE_DEPTH, SpanNode, span_tree
from tests.server.api import Client, assert_problem, bearer
from tests.server.conftest import make_org
from tests.server.ingest_events import T0
from tests.server.principals import limited_key
from tests.server.reading import seeded

HOUR = dt.timedelta(hours=1)

UNKNOWN_ID = "0190c0de-0000-7000-8000-00000000abcd"
"""An id no row has (fixed, so every pytest-xdist worker collects the same tests)."""


def at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [run["name"] for run in response.json()["items"]]


def all_pages(client: Client, auth: dict[str, str], **params: Any) -> list[list[str]]:
    """Follow ``next_cursor`` to the end; the run ids of each page."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/runs", params=query, headers=auth).json()
        pages.append([run["id"] for run in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


# Listing


def test_runs_are_listed_newest_first_with_their_summary(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        rows.run(name="old", started_at=T0)
        failed = rows.run(
            name="new",
            agent="billing",
            status="error",
            environment="dev",
            started_at=T0 + HOUR,
            ended_at=T0 + HOUR + dt.timedelta(milliseconds=1500),
            tags=["nightly"],
            error={"type": "ValueError", "message": "bad input", "stack": "Traceback..."},
            span_count=3,
            error_count=1,
            input_tokens=120,
            output_tokens=30,
        )
        rows.run(name="middle", started_at=T0 + HOUR / 2, ended_at=None, status="running")

    response = client.get("/api/v1/runs", headers=auth)

    assert names(response) == ["new", "middle", "old"]
    newest, running = response.json()["items"][:2]
    assert newest == {
        "id": str(failed.id),
        "agent": "billing",
        "name": "new",
        "environment": "dev",
        "status": "error",
        "started_at": "2026-11-01T13:00:00Z",
        "ended_at": "2026-11-01T13:00:01.500000Z",
        "duration_ms": 1500.0,
        "tags": ["nightly"],
        "error": {"type": "ValueError", "message": "bad input", "stack": "Traceback..."},
        "span_count": 3,
        "error_count": 1,
        "input_tokens": 120,
        "output_tokens": 30,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost": None,
        "sdk_cost": None,
        "cost_mismatch": False,
        "llm_calls": 0,
        "unpriced_calls": 0,
    }
    assert running["ended_at"] is None
    assert running["duration_ms"] is None
    assert response.json()["next_cursor"] is None


def test_runs_starting_at_the_same_moment_are_ordered_by_id_descending(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    ids = sorted(uuid.uuid4() for _ in range(4))
    with seeded(migrated_url, org.org_id) as rows:
        for run_id in ids:
            rows.run(id=run_id, started_at=T0)

    response = client.get("/api/v1/runs", headers=auth)

    assert [run["id"] for run in response.json()["items"]] == [str(i) for i in reversed(ids)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"agent": "triage"}, ["b", "a"]),
        ({"status": "ok"}, ["c", "a"]),
        ({"environment": "dev"}, ["c", "b"]),
        ({"started_after": "2026-11-01T13:00:00Z"}, ["d", "c", "b"]),
        ({"started_before": "2026-11-01T14:00:00Z"}, ["b", "a"]),
        (
            {"started_after": "2026-11-01T13:00:00Z", "started_before": "2026-11-01T15:00:00Z"},
            ["c", "b"],
        ),
        ({"agent": "billing", "status": "ok"}, ["c"]),
        ({"agent": "nobody"}, []),
        ({"started_after": "2026-11-01T13:00:00"}, ["d", "c", "b"]),
        ({"started_after": "2026-11-01T15:00:00+02:00"}, ["d", "c", "b"]),
    ],
    ids=[
        "agent",
        "status",
        "environment",
        "started-after-inclusive",
        "started-before-exclusive",
        "time-range",
        "agent-and-status",
        "unknown-agent",
        "naive-time-is-utc",
        "offset-time",
    ],
)
def test_filters_select_matching_runs(
    client: Client,
    auth: dict[str, str],
    migrated_url: str,
    org: IssuedKey,
    params: dict[str, str],
    expected: list[str],
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        rows.run(name="a", agent="triage", status="ok", environment="prod", started_at=T0)
        rows.run(name="b", agent="triage", status="error", environment="dev", started_at=T0 + HOUR)
        rows.run(
            name="c", agent="billing", status="ok", environment="dev", started_at=T0 + 2 * HOUR
        )
        rows.run(
            name="d",
            agent="billing",
            status="blocked",
            environment="test",
            started_at=T0 + 3 * HOUR,
        )

    assert names(client.get("/api/v1/runs", params=params, headers=auth)) == expected


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "bogus"}, "validation_error"),
        ({"environment": "moon"}, "validation_error"),
        ({"started_after": "yesterday"}, "invalid_timestamp"),
        ({"started_before": "2026-13-45T00:00:00Z"}, "invalid_timestamp"),
        ({"limit": "0"}, "validation_error"),
        ({"limit": "501"}, "validation_error"),
        ({"limit": "many"}, "validation_error"),
        ({"cursor": "not-a-cursor"}, "validation_error"),
        (
            {"cursor": base64.urlsafe_b64encode(b"2026-11-01T12:00:00|xyz").decode()},
            "validation_error",
        ),
    ],
    ids=lambda value: (
        "-".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
    ),
)
def test_bad_filter_values_are_refused_with_a_code(
    client: Client, auth: dict[str, str], params: dict[str, str], code: str
) -> None:
    response = client.get("/api/v1/runs", params=params, headers=auth)

    assert_problem(response, 400, code)


# Pagination


def test_pages_cover_every_run_once_in_order(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        # Three runs share each start time, so pages split ties; another agent's runs interleave.
        triage = [rows.run(started_at=T0 + dt.timedelta(minutes=i // 3)) for i in range(23)]
        for i in range(10):
            rows.run(agent="billing", started_at=T0 + dt.timedelta(minutes=i))

    pages = all_pages(client, auth, agent="triage", limit=5)

    newest_first = sorted(triage, key=lambda run: (run.started_at, run.id), reverse=True)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [run_id for page in pages for run_id in page] == [str(r.id) for r in newest_first]


def test_a_full_last_page_ends_without_an_empty_page(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        for i in range(6):
            rows.run(started_at=T0 + dt.timedelta(minutes=i))

    assert [len(page) for page in all_pages(client, auth, limit=3)] == [3, 3]


def test_pages_are_stable_under_concurrent_inserts(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        first = [rows.run(started_at=T0 + dt.timedelta(minutes=i)) for i in range(10)]
    page = client.get("/api/v1/runs", params={"limit": 4}, headers=auth).json()
    seen = [run["id"] for run in page["items"]]

    with seeded(migrated_url, org.org_id) as rows:
        newer = [rows.run(started_at=T0 + dt.timedelta(hours=1, minutes=i)) for i in range(3)]
        older = [rows.run(started_at=T0 - dt.timedelta(minutes=1 + i)) for i in range(2)]
    rest = all_pages(client, auth, limit=4, cursor=page["next_cursor"])

    remaining = [str(r.id) for r in reversed(first[:6])] + [str(r.id) for r in older]
    assert [run_id for page in rest for run_id in page] == remaining
    assert not {str(r.id) for r in newer} & {run_id for page in rest for run_id in page}
    assert not set(seen) & set(remaining)


def test_limit_defaults_to_50_and_accepts_up_to_500(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        for i in range(51):
            rows.run(started_at=T0 + dt.timedelta(seconds=i))

    default = client.get("/api/v1/runs", headers=auth).json()
    widest = client.get("/api/v1/runs", params={"limit": 500}, headers=auth).json()

    assert len(default["items"]) == 50
    assert default["next_cursor"] is not None
    assert len(widest["items"]) == 51
    assert widest["next_cursor"] is None


# One run and its span tree


def test_run_detail_nests_spans_into_a_tree(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run(
            agent="researcher",
            input={"topic": "otters"},
            output="a report",
            metadata_={"user": "u1"},
        )
        root = rows.span(run, "researcher", kind="agent", ended_at=run.ended_at)
        plan = rows.span(run, "plan", kind="step", parent=root, offset_ms=1)
        # Inserted out of order: the tree lists children by start time.
        rows.span(run, "fetch", parent=plan, offset_ms=30, input={"url": "x"}, output="page")
        rows.span(
            run,
            "search",
            parent=plan,
            offset_ms=2,
            status="error",
            error={"type": "TimeoutError", "message": "slow", "stack": ""},
        )
        rows.span(
            run,
            "summarise",
            kind="llm",
            parent=root,
            offset_ms=50,
            model="gpt-4o",
            provider="openai",
            input_tokens=900,
            output_tokens=120,
            attributes={"temperature": 0},
        )

    response = client.get(f"/api/v1/runs/{run.id}", headers=auth)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["agent"], body["status"]) == (str(run.id), "researcher", "ok")
    assert (body["input"], body["output"], body["metadata"]) == (
        {"topic": "otters"},
        "a report",
        {"user": "u1"},
    )
    [tree] = body["spans"]
    assert tree["name"] == "researcher"
    assert tree["parent_id"] is None
    assert [child["name"] for child in tree["children"]] == ["plan", "summarise"]
    plan_node, llm = tree["children"]
    assert plan_node["parent_id"] == str(root.id)
    assert [child["name"] for child in plan_node["children"]] == ["search", "fetch"]
    search, fetch = plan_node["children"]
    assert search["status"] == "error"
    assert search["error"] == {"type": "TimeoutError", "message": "slow", "stack": ""}
    assert (fetch["input"], fetch["output"], fetch["children"]) == ({"url": "x"}, "page", [])
    assert at(fetch["started_at"]) == T0 + dt.timedelta(milliseconds=30)
    assert at(fetch["ended_at"]) == T0 + dt.timedelta(milliseconds=40)
    assert fetch["duration_ms"] == 10.0
    assert {key: llm[key] for key in ("kind", "model", "provider")} == {
        "kind": "llm",
        "model": "gpt-4o",
        "provider": "openai",
    }
    assert (llm["input_tokens"], llm["output_tokens"]) == (900, 120)
    assert llm["attributes"] == {"temperature": 0}
    assert set(llm) >= {
        "id",
        "parent_id",
        "kind",
        "name",
        "status",
        "started_at",
        "ended_at",
        "duration_ms",
        "input",
        "output",
        "error",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "children",
    }


def test_spans_whose_parent_is_missing_attach_at_the_root(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run()
        root = rows.span(run, "triage", kind="agent")
        orphan = rows.span(run, "late-tool", parent=uuid.uuid4(), offset_ms=5)
        rows.span(run, "under-orphan", parent=orphan, offset_ms=6)

    body = client.get(f"/api/v1/runs/{run.id}", headers=auth).json()

    assert [span["name"] for span in body["spans"]] == ["triage", "late-tool"]
    assert body["spans"][0]["id"] == str(root.id)
    assert [span["name"] for span in body["spans"][1]["children"]] == ["under-orphan"]


def test_a_very_deep_span_chain_is_split_into_roots_of_bounded_depth(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run()
        parent = None
        for i in range(2 * MAX_TREE_DEPTH + 10):
            parent = rows.span(run, f"s{i}", kind="step", parent=parent, offset_ms=i)

    response = client.get(f"/api/v1/runs/{run.id}", headers=auth)

    assert response.status_code == 200, response.text
    roots = response.json()["spans"]
    assert [root["name"] for root in roots] == [f"s{i * MAX_TREE_DEPTH}" for i in range(3)]
    assert [_chain_length(root) for root in roots] == [MAX_TREE_DEPTH, MAX_TREE_DEPTH, 10]
    assert roots[1]["parent_id"] is not None  # still names its real parent


def _chain_length(node: dict[str, Any]) -> int:
    length = 1
    while node["children"]:
        [node] = node["children"]
        length += 1
    return length


def test_a_run_without_spans_has_an_empty_tree(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run()

    assert client.get(f"/api/v1/runs/{run.id}", headers=auth).json()["spans"] == []


@pytest.mark.parametrize("run_id", [UNKNOWN_ID, "not-a-uuid"])
def test_unknown_run_is_run_not_found(client: Client, auth: dict[str, str], run_id: str) -> None:
    assert_problem(client.get(f"/api/v1/runs/{run_id}", headers=auth), 404, "run_not_found")


def test_spans_on_a_parent_cycle_are_still_shown() -> None:
    a, b, selfish = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    roots = span_tree(
        [
            _node(a, "a", parent_id=b, offset_ms=1),
            _node(b, "b", parent_id=a, offset_ms=2),
            _node(selfish, "self", parent_id=selfish, offset_ms=3),
        ]
    )

    assert [root.name for root in roots] == ["a", "self"]
    assert [child.name for child in roots[0].children] == ["b"]
    assert roots[1].children == []


def _node(span_id: uuid.UUID, name: str, *, parent_id: uuid.UUID, offset_ms: int) -> SpanNode:
    return SpanNode(
        id=span_id,
        parent_id=parent_id,
        kind="tool",
        name=name,
        status="ok",
        started_at=T0 + dt.timedelta(milliseconds=offset_ms),
        ended_at=None,
        duration_ms=None,
        tags=[],
        attributes={},
        input=None,
        output=None,
        error=None,
        events=[],
        model=None,
        provider=None,
        input_tokens=None,
        output_tokens=None,
        cached_input_tokens=None,
        cache_write_tokens=None,
        reasoning_tokens=None,
        cost=None,
        cost_match=None,
        pricing_version=None,
        priced_model=None,
        sdk_cost=None,
        cost_mismatch=False,
        blocked_by=None,
        decisions=[],
        approvals=[],
    )


# Isolation, scopes, schema


def test_another_orgs_key_cannot_list_or_fetch_runs(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with seeded(migrated_url, org.org_id) as rows:
        run = rows.run()
        rows.span(run, "secret-tool")
    other = make_org(migrated_url, "globex")
    other_auth = bearer(other.key)

    assert client.get("/api/v1/runs", headers=other_auth).json()["items"] == []
    assert_problem(client.get(f"/api/v1/runs/{run.id}", headers=other_auth), 404, "run_not_found")
    assert names(client.get("/api/v1/runs", headers=auth)) == ["triage"]


def test_a_run_id_used_by_two_orgs_shows_each_org_only_its_own_spans(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    other = make_org(migrated_url, "globex")
    run_id = uuid.uuid4()
    for owner, span_name in ((org, "acme-span"), (other, "globex-span")):
        with seeded(migrated_url, owner.org_id) as rows:
            rows.span(rows.run(id=run_id), span_name)

    ours = client.get(f"/api/v1/runs/{run_id}", headers=auth).json()
    theirs = client.get(f"/api/v1/runs/{run_id}", headers=bearer(other.key)).json()

    assert [span["name"] for span in ours["spans"]] == ["acme-span"]
    assert [span["name"] for span in theirs["spans"]] == ["globex-span"]


@pytest.mark.parametrize("path", ["/api/v1/runs", f"/api/v1/runs/{UNKNOWN_ID}"])
def test_a_key_without_the_read_scope_is_refused(
    client: Client, migrated_url: str, org: IssuedKey, path: str
) -> None:
    ingest_only = limited_key(migrated_url, org.org_id, scopes=["ingest"])

    response = client.get(path, headers=bearer(ingest_only.key))

    assert_problem(response, 403, "insufficient_scope")


def test_runs_need_a_credential(client: Client) -> None:
    assert_problem(client.get("/api/v1/runs"), 401, "unauthenticated")


def test_openapi_schema_describes_the_run_responses(client: Client) -> None:
    schema = client.get("/schema/openapi.json").json()

    assert {"/api/v1/runs", "/api/v1/runs/{run_id}"} <= set(schema["paths"])
    components = schema["components"]["schemas"]
    assert {"RunPage", "RunSummary", "RunDetail", "SpanNode"} <= set(components)
    assert components["SpanNode"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/SpanNode"
    }
    parameters = {p["name"] for p in schema["paths"]["/api/v1/runs"]["get"]["parameters"]}
    assert parameters >= {
        "agent",
        "status",
        "environment",
        "started_after",
        "started_before",
        "limit",
        "cursor",
    }
