"""Ingest: ``POST /api/v1/ingest/batch`` and ``/run``, on SQLite and PostgreSQL.

Specification: valid events are stored with their agent; events merge whatever order they arrive
in (a late start never regresses a finished run; the later final state wins); each id is stored
once per org however often it is sent; a bad event is rejected with its index and reason while
the valid events beside it are stored (207); a bad request as a whole is a 4xx problem with a
stable code and stores nothing; only keys with the ``ingest`` scope may write, and only their
org's rows.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from agentops_server import Settings
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.conftest import make_org
from tests.server.ingest_events import (
    INGEST,
    T0,
    UPLOAD,
    batch,
    by_id,
    rows,
    run_event,
    span_event,
    started,
    utc,
)
from tests.server.principals import limited_key

A_VALID_EVENT = json.dumps([run_event()]).encode()


def post(client: Client, auth: dict[str, str], payload: Any, path: str = INGEST) -> Any:
    return client.post(path, json=payload, headers=auth)


def post_gzip(client: Client, auth: dict[str, str], body: bytes, path: str = INGEST) -> Any:
    headers = auth | {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    return client.post(path, content=gzip.compress(body), headers=headers)


def nothing_stored(url: str) -> bool:
    return rows(url, "runs") == [] and rows(url, "spans") == [] and rows(url, "agents") == []


@pytest.fixture
def limited(settings: Settings) -> Iterator[Client]:
    """A hub taking at most 3 events and 64 KiB per request."""
    with client_with(settings, max_batch_events=3, max_body_bytes=64 * 1024) as client:
        yield client


# -- storing --------------------------------------------------------------------------------------


def test_a_batch_as_the_sdk_sends_it_stores_the_run_its_spans_and_its_agent(
    client: Client, auth: dict[str, str], org: IssuedKey, migrated_url: str
) -> None:
    run = run_event()
    span = span_event(run)
    response = post(client, auth, batch(started(run), span, run))

    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": 0, "errors": []}
    (stored_run,) = rows(migrated_url, "runs")
    assert stored_run["org_id"] == org.org_id
    assert str(stored_run["id"]) == run["id"]
    assert stored_run["status"] == "ok"
    assert utc(stored_run["started_at"]) == T0
    assert utc(stored_run["ended_at"]) == T0 + dt.timedelta(seconds=2)
    assert stored_run["tags"] == ["nightly"]
    assert stored_run["metadata"] == {"ticket": 7}
    assert stored_run["input"] == {"question": "why?"}
    assert stored_run["output"] == "because"
    assert stored_run["error"] is None
    assert (stored_run["input_tokens"], stored_run["output_tokens"]) == (12, 30)
    (stored_span,) = rows(migrated_url, "spans")
    assert str(stored_span["run_id"]) == run["id"]
    assert (stored_span["kind"], stored_span["name"], stored_span["status"]) == ("llm", "ask", "ok")
    assert (stored_span["model"], stored_span["provider"]) == ("gpt-4o", "openai")
    assert (stored_span["input_tokens"], stored_span["output_tokens"]) == (12, 30)
    assert stored_span["attributes"] == {"temperature": 0.2}
    assert stored_span["events"] == [
        {"name": "retry", "at": "2026-11-01T12:00:00Z", "attributes": {"attempt": 1}}
    ]
    (agent,) = rows(migrated_url, "agents")
    assert agent["name"] == "triage"
    assert utc(agent["first_seen_at"]) == T0
    assert utc(agent["last_seen_at"]) == T0 + dt.timedelta(seconds=2)


def test_a_gzip_body_is_inflated_and_stored(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    response = post_gzip(client, auth, json.dumps(batch(run, span_event(run))).encode())

    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert len(rows(migrated_url, "runs")) == 1
    assert len(rows(migrated_url, "spans")) == 1


def test_an_agent_seen_again_keeps_its_row_and_moves_its_last_seen_time(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    later = T0 + dt.timedelta(hours=3)
    assert post(client, auth, batch(run_event())).status_code == 200
    second = run_event(started_at=later.isoformat(), ended_at=later.isoformat())
    assert post(client, auth, batch(second, run_event(agent="billing"))).status_code == 200

    agents = {agent["name"]: agent for agent in rows(migrated_url, "agents")}
    assert set(agents) == {"triage", "billing"}
    assert utc(agents["triage"]["first_seen_at"]) == T0
    assert utc(agents["triage"]["last_seen_at"]) == later


def test_times_with_an_offset_are_stored_as_the_same_instant_in_utc(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event(started_at="2026-11-01T14:00:00+02:00", ended_at="2026-11-01T09:00:01-03:00")
    assert post(client, auth, batch(run)).status_code == 200

    (stored,) = rows(migrated_url, "runs")
    assert utc(stored["started_at"]) == T0
    assert utc(stored["ended_at"]) == T0 + dt.timedelta(seconds=1)


def test_nul_characters_that_postgresql_cannot_store_become_replacement_characters(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event(output="a\x00b", metadata={"k\x00": "v"})
    response = post(client, auth, batch(run, span_event(run, name="n\x00")))

    assert response.status_code == 200
    (stored,) = rows(migrated_url, "runs")
    assert stored["output"] == "a\ufffdb"
    assert stored["metadata"] == {"k\ufffd": "v"}
    assert rows(migrated_url, "spans")[0]["name"] == "n\ufffd"


# -- merging out of order -------------------------------------------------------------------------


def test_a_span_before_its_run_and_an_end_before_its_start_end_in_the_final_state(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    span = span_event(run)

    first = post(client, auth, batch(span))
    end = post(client, auth, batch(run))
    late_start = post(client, auth, batch(started(run)))

    assert [r.json()["accepted"] for r in (first, end, late_start)] == [1, 1, 0]
    assert late_start.json()["duplicates"] == 1
    (stored,) = rows(migrated_url, "runs")
    assert stored["status"] == "ok"
    assert utc(stored["ended_at"]) == T0 + dt.timedelta(seconds=2)
    assert stored["output"] == "because"
    assert stored["span_count"] == 1
    assert str(rows(migrated_url, "spans")[0]["run_id"]) == run["id"]


def test_an_end_before_its_start_in_one_batch_ends_in_the_final_state(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    response = post(client, auth, batch(run, started(run)))

    assert response.json() == {"accepted": 1, "duplicates": 1, "rejected": 0, "errors": []}
    (stored,) = rows(migrated_url, "runs")
    assert stored["status"] == "ok"


@pytest.mark.parametrize("order", ["earlier first", "later first"])
def test_of_two_final_states_the_one_that_ended_later_wins_whatever_the_order(
    client: Client, auth: dict[str, str], migrated_url: str, order: str
) -> None:
    run = run_event()
    earlier = run | {"status": "ok"}
    error = {"type": "Cancelled", "message": "stopped by an operator", "stack": ""}
    later = run | {
        "status": "error",
        "ended_at": (T0 + dt.timedelta(seconds=9)).isoformat(),
        "error": error,
    }
    for event in (earlier, later) if order == "earlier first" else (later, earlier):
        assert post(client, auth, batch(event)).status_code == 200

    (stored,) = rows(migrated_url, "runs")
    assert stored["status"] == "error"
    assert stored["error"] == error
    assert utc(stored["ended_at"]) == T0 + dt.timedelta(seconds=9)


def test_every_arrival_order_of_a_runs_events_ends_in_the_same_final_state(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    error = {"type": "Timeout", "message": "gave up", "stack": ""}
    later_end = (T0 + dt.timedelta(seconds=9)).isoformat()
    run_ids = []
    for order in itertools.permutations(range(3)):
        for together in (True, False):
            run = run_event()
            run_ids.append(run["id"])
            events = [
                started(run),
                run,
                run | {"status": "error", "ended_at": later_end, "error": error},
            ]
            arriving = [events[i] for i in order]
            for payload in [batch(*arriving)] if together else [batch(e) for e in arriving]:
                assert post(client, auth, payload).status_code == 200

    stored = by_id(rows(migrated_url, "runs"))
    assert sorted(stored) == sorted(run_ids)
    assert {(r["status"], utc(r["ended_at"])) for r in stored.values()} == {
        ("error", T0 + dt.timedelta(seconds=9))
    }
    assert all(r["error"] == error and r["output"] == "because" for r in stored.values())


# -- idempotency and tenants ----------------------------------------------------------------------


def test_a_batch_sent_three_times_is_stored_once_and_reported_as_duplicates(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    payload = batch(started(run), span_event(run), span_event(run), run)

    answers = [post(client, auth, payload).json() for _ in range(3)]

    assert [(a["accepted"], a["duplicates"]) for a in answers] == [(4, 0), (0, 4), (0, 4)]
    assert len(rows(migrated_url, "runs")) == 1
    assert len(rows(migrated_url, "spans")) == 2
    assert len(rows(migrated_url, "agents")) == 1


def test_the_same_ids_sent_by_two_orgs_are_stored_for_each_without_touching_the_other(
    client: Client, auth: dict[str, str], org: IssuedKey, migrated_url: str
) -> None:
    other = make_org(migrated_url, "globex")
    run = run_event()
    span = span_event(run)
    assert post(client, auth, batch(run, span)).status_code == 200

    theirs = batch(run | {"name": "theirs", "status": "error"}, span | {"name": "theirs"})
    response = post(client, bearer(other.key), theirs)

    assert response.json()["accepted"] == 2
    expected = {org.org_id: ("triage", "ok", "ask"), other.org_id: ("theirs", "error", "theirs")}
    for org_id, (run_name, status, span_name) in expected.items():
        (stored_run,) = rows(migrated_url, "runs", org_id)
        (stored_span,) = rows(migrated_url, "spans", org_id)
        assert (str(stored_run["id"]), str(stored_span["id"])) == (run["id"], span["id"])
        assert (stored_run["name"], stored_run["status"], stored_span["name"]) == (
            run_name,
            status,
            span_name,
        )
        assert [agent["name"] for agent in rows(migrated_url, "agents", org_id)] == ["triage"]


# -- bad events beside good ones: 207 -------------------------------------------------------------


def test_bad_events_are_rejected_with_their_reason_and_the_valid_ones_beside_them_stored(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    good_span = span_event(run)
    wrong_type = span_event(run, kind="robot")
    missing_field = {key: value for key, value in span_event(run).items() if key != "name"}
    newer_version = span_event(run, schema_version=2)
    too_many_tokens = span_event(run, llm={"input_tokens": 2**63})
    payload = batch(
        run, wrong_type, 42, good_span, missing_field, {"type": "span", "id": "x"}, newer_version
    )
    payload["events"].append(too_many_tokens)

    response = post(client, auth, payload)

    assert response.status_code == 207
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 0, 6)
    errors = {error["index"]: error for error in answer["errors"]}
    assert sorted(errors) == [1, 2, 4, 5, 6, 7]
    assert errors[1]["id"] == wrong_type["id"]
    assert errors[1]["code"] == "validation_error"
    assert errors[1]["detail"].startswith("kind: ")
    assert errors[2] == {
        "index": 2,
        "id": None,
        "code": "validation_error",
        "detail": "not a JSON object",
    }
    assert errors[4]["id"] == missing_field["id"]
    assert errors[4]["detail"].startswith("name: Field required")
    assert errors[5]["id"] is None
    assert "id: " in errors[5]["detail"]
    assert errors[6]["code"] == "unsupported_schema_version"
    assert errors[7]["id"] == too_many_tokens["id"]
    assert "input_tokens" in errors[7]["detail"]
    assert [str(row["id"]) for row in rows(migrated_url, "runs")] == [run["id"]]
    assert [str(row["id"]) for row in rows(migrated_url, "spans")] == [good_span["id"]]


def test_a_batch_of_only_bad_events_is_207_and_stores_nothing(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    response = post(client, auth, batch(run_event(status="finished")))

    assert response.status_code == 207
    assert response.json()["rejected"] == 1
    assert response.json()["errors"][0]["detail"].startswith("status: ")
    assert nothing_stored(migrated_url)


# -- bad requests: a problem, nothing stored ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b'{"events": [', 400, "malformed_json", id="truncated JSON"),
        pytest.param(b"\xff\xfe", 400, "malformed_json", id="not UTF-8"),
        pytest.param(b'{"events": [NaN]}', 400, "malformed_json", id="NaN"),
        pytest.param(b"[]", 400, "validation_error", id="an array"),
        pytest.param(b'"events"', 400, "validation_error", id="a string"),
        pytest.param(b"{}", 400, "validation_error", id="no events"),
        pytest.param(b'{"events": {}}', 400, "validation_error", id="events not a list"),
        pytest.param(
            b'{"schema_version": 2, "events": %s}' % A_VALID_EVENT,
            400,
            "unsupported_schema_version",
            id="version 2",
        ),
        pytest.param(
            b'{"schema_version": "1", "events": %s}' % A_VALID_EVENT,
            400,
            "unsupported_schema_version",
            id="version '1'",
        ),
    ],
)
def test_a_request_that_is_bad_as_a_whole_is_a_problem_and_stores_nothing(
    client: Client, auth: dict[str, str], migrated_url: str, body: bytes, status: int, code: str
) -> None:
    response = client.post(INGEST, content=body, headers=auth)

    assert_problem(response, status, code)
    assert nothing_stored(migrated_url)


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_id", "not-a-uuid"), ("sdk", None), ("sdk", {"name": "x"}), ("extra", 1)],
)
def test_a_bad_envelope_is_a_validation_problem_naming_the_field(
    client: Client, auth: dict[str, str], migrated_url: str, field: str, value: Any
) -> None:
    response = post(client, auth, batch(run_event()) | {field: value})

    problem = assert_problem(response, 400, "validation_error")
    assert problem["detail"].startswith(field)
    assert nothing_stored(migrated_url)


def test_more_events_than_the_hub_takes_is_413_too_many_events(
    limited: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    response = post(limited, auth, batch(run, *[span_event(run) for _ in range(3)]))

    problem = assert_problem(response, 413, "too_many_events")
    assert "4 events" in problem["detail"]
    assert nothing_stored(migrated_url)
    assert post(limited, auth, batch(run, span_event(run))).status_code == 200


def test_a_body_over_the_size_limit_is_413(
    limited: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event(input="x" * 70 * 1024)
    response = post(limited, auth, batch(run))

    assert_problem(response, 413, "payload_too_large")
    assert nothing_stored(migrated_url)


def test_a_gzip_bomb_is_413(limited: Client, auth: dict[str, str], migrated_url: str) -> None:
    # 48 KiB that would inflate to 48 MiB of valid JSON (a batch, then whitespace).
    squeeze = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    parts = [squeeze.compress(json.dumps(batch(run_event())).encode())]
    parts += [squeeze.compress(b" " * 1024 * 1024) for _ in range(48)]
    bomb = b"".join([*parts, squeeze.flush()])
    assert len(bomb) < 64 * 1024

    headers = auth | {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = limited.post(INGEST, content=bomb, headers=headers)

    problem = assert_problem(response, 413, "payload_too_large")
    assert str(64 * 1024) in problem["detail"]
    assert nothing_stored(migrated_url)


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"not gzip at all", "malformed_gzip"), (gzip.compress(b"{}" * 100)[:-9], "malformed_gzip")],
    ids=["not gzip", "truncated"],
)
def test_a_body_that_is_not_valid_gzip_is_400(
    client: Client, auth: dict[str, str], body: bytes, code: str
) -> None:
    headers = auth | {"Content-Encoding": "gzip"}
    assert_problem(client.post(INGEST, content=body, headers=headers), 400, code)


def test_a_content_encoding_other_than_gzip_is_415(client: Client, auth: dict[str, str]) -> None:
    headers = auth | {"Content-Encoding": "br"}
    response = client.post(INGEST, content=b"{}", headers=headers)

    assert_problem(response, 415, "unsupported_content_encoding")


# -- who may write --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [INGEST, UPLOAD])
@pytest.mark.parametrize(
    ("credentials", "status", "code"),
    [
        ("none", 401, "unauthenticated"),
        ("malformed", 401, "invalid_api_key"),
        ("unknown", 401, "invalid_api_key"),
        ("revoked", 401, "revoked_api_key"),
        ("read only", 403, "insufficient_scope"),
    ],
)
def test_only_a_valid_key_with_the_ingest_scope_may_write(
    client: Client,
    org: IssuedKey,
    migrated_url: str,
    path: str,
    credentials: str,
    status: int,
    code: str,
) -> None:
    keys = {
        "none": None,
        "malformed": "ak_nope",
        "unknown": org.key[:-8] + "AAAAAAAA",
        "revoked": lambda: limited_key(migrated_url, org.org_id, scopes=["ingest"], revoked=True),
        "read only": lambda: limited_key(migrated_url, org.org_id, scopes=["read"]),
    }
    key = keys[credentials]
    key = key().key if callable(key) else key
    headers = {} if key is None else bearer(key)
    run = run_event()
    payload = batch(run) if path == INGEST else {"run": run, "spans": [span_event(run)]}

    assert_problem(client.post(path, json=payload, headers=headers), status, code)
    assert nothing_stored(migrated_url)


def test_a_key_with_only_the_ingest_scope_may_write(
    client: Client, org: IssuedKey, migrated_url: str
) -> None:
    key = limited_key(migrated_url, org.org_id, scopes=["ingest"])
    response = post(client, bearer(key.key), batch(run_event()))

    assert response.status_code == 200
    assert len(rows(migrated_url, "runs", org.org_id)) == 1


# -- one whole run --------------------------------------------------------------------------------


def test_a_run_upload_stores_the_run_and_its_spans_once(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    root = span_event(run, kind="agent", llm=None)
    upload: dict[str, Any] = {"run": run, "spans": [root, span_event(run, parent_id=root["id"])]}

    first = post(client, auth, upload, UPLOAD)
    again = post_gzip(client, auth, json.dumps(upload).encode(), UPLOAD)

    assert first.status_code == 200
    assert first.json() == {"accepted": 3, "duplicates": 0, "rejected": 0, "errors": []}
    assert again.json() == {"accepted": 0, "duplicates": 3, "rejected": 0, "errors": []}
    assert [row["status"] for row in rows(migrated_url, "runs")] == ["ok"]
    spans = by_id(rows(migrated_url, "spans"))
    assert set(spans) == {s["id"] for s in upload["spans"]}
    assert str(spans[upload["spans"][1]["id"]]["parent_id"]) == root["id"]
    assert [agent["name"] for agent in rows(migrated_url, "agents")] == ["triage"]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ("a span of another run", "spans.1.run_id: not the id of the uploaded run"),
        ("a span without a name", "spans.0.name: Field required"),
        ("no run", "run: Field required"),
    ],
)
def test_a_run_upload_with_a_bad_part_is_rejected_whole(
    client: Client, auth: dict[str, str], migrated_url: str, change: str, detail: str
) -> None:
    run = run_event()
    upload: dict[str, Any] = {"run": run, "spans": [span_event(run), span_event(run)]}
    if change == "a span of another run":
        upload["spans"][1]["run_id"] = str(uuid.uuid4())
    elif change == "a span without a name":
        del upload["spans"][0]["name"]
    else:
        del upload["run"]

    problem = assert_problem(post(client, auth, upload, UPLOAD), 400, "validation_error")
    assert problem["detail"].startswith(detail)
    assert nothing_stored(migrated_url)


def test_a_run_upload_with_more_spans_than_the_hub_takes_is_413(
    limited: Client, auth: dict[str, str], migrated_url: str
) -> None:
    run = run_event()
    upload = {"run": run, "spans": [span_event(run) for _ in range(3)]}

    assert_problem(post(limited, auth, upload, UPLOAD), 413, "too_many_events")
    assert nothing_stored(migrated_url)
