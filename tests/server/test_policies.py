"""Policies on the hub: immutable versions, validation pointing at the field, table tests that
refuse a save, activation, rollback, diffs and their audit, dry runs on recorded calls, the
effective set with its ETag, team leads' reach. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk import PolicyViolation, tool
from agentops_sdk.contract.policy import EffectivePolicy, parse_policy
from agentops_sdk.enforcement.hub_stream import HubStream
from agentops_sdk.testing import capture_events
from agentops_server import Settings, create_app
from agentops_server.db.engine import run_in_session
from agentops_server.db.tenancy import tenant
from agentops_server.security.permissions import Role
from agentops_server.services.governance.policies import policies_snapshot, policies_version
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, bearer
from tests.server.database import db_id, scalar
from tests.server.ingest_events import INGEST, T0, batch, run_event, span_event
from tests.server.principals import People, limited_key

POLICIES = "/api/v1/policies"
VERSIONS = f"{POLICIES}/versions"
EFFECTIVE = f"{POLICIES}/effective"

NO_DELETES = {
    "id": "no-deletes",
    "match": {"kind": "tool", "name": "delete_*"},
    "outcome": "deny",
    "message": "Deleting is not allowed for agents.",
}
EXTERNAL_MAIL = {
    "id": "external-mail",
    "match": {"kind": "tool", "name": "send_email"},
    "when": {"argument": "to", "not_regex": r"@example\.com$"},
    "outcome": "require_approval",
}
NO_GPT4 = {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"}
DELETE_TEST = {
    "name": "deletes are refused",
    "given": {"kind": "tool", "name": "delete_user", "arguments": {"id": 7}},
    "expect": {"outcome": "deny", "rule": "no-deletes"},
}


def save(client: Client, auth: dict[str, str], *rules: dict[str, Any], **body: Any) -> Any:
    response = client.post(
        VERSIONS, json={"document": {"rules": list(rules)}, **body}, headers=auth
    )
    assert response.status_code == 201, response.text
    return response.json()


def audit_actions(client: Client, auth: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/api/v1/audit", params={"action": "policy."}, headers=auth)
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))


def test_each_save_is_a_new_numbered_version_and_none_is_active_until_activated(
    client: Client, auth: dict[str, str]
) -> None:
    first = save(client, auth, NO_DELETES, comment="first")
    second = save(client, auth, NO_DELETES, NO_GPT4)

    assert (first["number"], second["number"]) == (1, 2)
    assert second["document"]["version"] == 2
    assert client.get(f"{VERSIONS}/{first['id']}", headers=auth).json()["document"] == {
        "rules": [NO_DELETES],
        "version": 1,
    }
    listed = client.get(VERSIONS, headers=auth).json()
    assert [item["number"] for item in listed["items"]] == [2, 1]
    assert [item["comment"] for item in listed["items"]] == [None, "first"]
    assert not any(item["active"] for item in listed["items"])
    status = client.get(POLICIES, headers=auth).json()
    assert (status["latest_number"], status["active_number"], status["revision"]) == (2, None, 0)


def test_versions_are_listed_a_page_at_a_time(client: Client, auth: dict[str, str]) -> None:
    for _ in range(3):
        save(client, auth, NO_DELETES)

    page = client.get(VERSIONS, params={"limit": 2}, headers=auth).json()
    rest = client.get(VERSIONS, params={"limit": 2, "before": page["next_before"]}, headers=auth)

    assert [item["number"] for item in page["items"]] == [3, 2]
    assert [item["number"] for item in rest.json()["items"]] == [1]
    assert rest.json()["next_before"] is None


def test_an_invalid_document_is_refused_with_the_rule_and_field_of_each_problem(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    bad_regex = {**EXTERNAL_MAIL, "when": {"argument": "to", "not_regex": "(a+)+$"}}
    typo = {"id": "typo", "macth": {"kind": "tool"}, "outcome": "deny"}

    response = client.post(
        VERSIONS, json={"document": {"rules": [NO_DELETES, bad_regex, typo]}}, headers=auth
    )

    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "invalid_policy"
    errors = {error["field"]: error for error in problem["errors"]}
    assert set(errors) == {"/rules/1/when/not_regex", "/rules/2/macth"}
    assert errors["/rules/1/when/not_regex"]["rule"] == "external-mail"
    assert errors["/rules/1/when/not_regex"]["index"] == 1
    assert errors["/rules/2/macth"]["pointer"] == "/document/rules/2/macth"
    assert errors["/rules/2/macth"]["rule"] == "typo"
    assert scalar(migrated_url, "SELECT count(*) FROM policy_versions") == 0


def test_a_failing_table_test_refuses_the_save_and_lists_what_it_expected(
    client: Client, auth: dict[str, str], migrated_url: str
) -> None:
    mistaken = {
        "name": "search is denied",
        "given": {"kind": "tool", "name": "search"},
        "expect": "deny",
    }

    response = client.post(
        VERSIONS,
        json={"document": {"rules": [NO_DELETES]}, "tests": [DELETE_TEST, mistaken]},
        headers=auth,
    )

    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "policy_tests_failed"
    assert problem["failures"] == [
        {
            "index": 1,
            "name": "search is denied",
            "expected": {"outcome": "deny", "rule": None},
            "got": {"outcome": "allow", "rule": None, "reason": None},
        }
    ]
    assert scalar(migrated_url, "SELECT count(*) FROM policy_versions") == 0


def test_passing_table_tests_are_stored_with_the_version(
    client: Client, auth: dict[str, str]
) -> None:
    mail_test = {
        "name": "mail outside needs a human",
        "given": {"kind": "tool", "name": "send_email", "arguments": {"to": "x@evil.org"}},
        "expect": "require_approval",
    }

    saved = save(client, auth, NO_DELETES, EXTERNAL_MAIL, tests=[DELETE_TEST, mail_test])

    assert saved["table_tests"] == [DELETE_TEST, mail_test]
    assert saved["tests"] == 2


def test_malformed_table_tests_point_at_the_test_and_field(
    client: Client, auth: dict[str, str]
) -> None:
    broken = {"name": "no kind", "given": {"name": "search"}, "expect": "allow"}

    response = client.post(
        VERSIONS, json={"document": {"rules": [NO_DELETES]}, "tests": [broken]}, headers=auth
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_policy_tests"
    (error,) = response.json()["errors"]
    assert (error["test"], error["pointer"]) == ("no kind", "/tests/0/given/kind")


def test_activation_serves_the_version_as_the_effective_set_with_an_etag_and_304(
    client: Client, auth: dict[str, str], org: IssuedKey
) -> None:
    empty = client.get(EFFECTIVE, headers=auth)
    assert empty.json() == {
        "org_id": str(org.org_id),
        "version": 0,
        "policy": None,
        "activated_at": None,
    }
    version = save(client, auth, NO_DELETES, EXTERNAL_MAIL)

    activated = client.post(f"{VERSIONS}/{version['id']}/activate", headers=auth)
    effective = client.get(EFFECTIVE, headers=auth)
    again = client.get(EFFECTIVE, headers={**auth, "If-None-Match": effective.headers["etag"]})
    stale = client.get(EFFECTIVE, headers={**auth, "If-None-Match": empty.headers["etag"]})

    assert activated.status_code == 200, activated.text
    assert activated.json()["active_number"] == 1
    assert effective.status_code == 200
    served = EffectivePolicy.model_validate_json(effective.content)
    assert served.version == 1
    assert effective.headers["etag"] == served.etag == f'"{org.org_id}-policies-1"'
    assert served.policy == parse_policy({"version": 1, "rules": [NO_DELETES, EXTERNAL_MAIL]})
    assert (again.status_code, again.content) == (304, b"")
    assert stale.status_code == 200


def test_an_sdk_reads_the_effective_set_with_its_ingest_key(
    client: Client, migrated_url: str, org: IssuedKey
) -> None:
    ingest_only = bearer(limited_key(migrated_url, org.org_id, scopes=["ingest"]).key)

    assert client.get(EFFECTIVE, headers=ingest_only).status_code == 200
    assert client.post(VERSIONS, json={"document": {}}, headers=ingest_only).status_code == 403


def test_activating_the_active_version_again_is_a_conflict(
    client: Client, auth: dict[str, str]
) -> None:
    version = save(client, auth, NO_DELETES, activate=True)

    response = client.post(f"{VERSIONS}/{version['id']}/activate", headers=auth)

    assert (response.status_code, response.json()["code"]) == (409, "already_active")


def test_rollback_saves_the_old_document_as_a_new_active_version_and_bumps_the_revision(
    client: Client, auth: dict[str, str]
) -> None:
    first = save(client, auth, NO_DELETES, tests=[DELETE_TEST], activate=True)
    save(client, auth, NO_DELETES, NO_GPT4, activate=True)

    response = client.post(f"{VERSIONS}/{first['id']}/rollback", json={}, headers=auth)

    assert response.status_code == 201, response.text
    rolled = response.json()
    assert (rolled["number"], rolled["rolled_back_from"], rolled["active"]) == (3, 1, True)
    assert rolled["comment"] == "rollback to version 1"
    assert rolled["document"] == {"rules": [NO_DELETES], "version": 3}
    assert rolled["table_tests"] == [DELETE_TEST]
    effective = EffectivePolicy.model_validate_json(client.get(EFFECTIVE, headers=auth).content)
    assert effective.version == 3
    assert effective.policy is not None
    assert effective.policy.version == 3


def test_deactivating_leaves_no_effective_set_at_a_new_revision(
    client: Client, auth: dict[str, str]
) -> None:
    save(client, auth, NO_DELETES, activate=True)

    response = client.delete(f"{POLICIES}/active", headers=auth)
    again = client.delete(f"{POLICIES}/active", headers=auth)

    assert response.status_code == 204
    effective = client.get(EFFECTIVE, headers=auth).json()
    assert (effective["version"], effective["policy"]) == (2, None)
    assert (again.status_code, again.json()["code"]) == (409, "no_active_policy")


def test_the_diff_of_a_version_names_rules_added_removed_and_changed(
    client: Client, auth: dict[str, str]
) -> None:
    first = save(client, auth, NO_DELETES, EXTERNAL_MAIL)
    warned = {**NO_DELETES, "outcome": "warn"}
    second = save(client, auth, warned, NO_GPT4)

    diff = client.get(f"{VERSIONS}/{second['id']}/diff", headers=auth).json()
    initial = client.get(f"{VERSIONS}/{first['id']}/diff", headers=auth).json()
    backwards = client.get(
        f"{VERSIONS}/{first['id']}/diff", params={"against": second["id"]}, headers=auth
    ).json()

    assert (diff["from_number"], diff["to_number"]) == (1, 2)
    assert diff["diff"]["added"] == [NO_GPT4]
    assert diff["diff"]["removed"] == [EXTERNAL_MAIL]
    assert diff["diff"]["changed"] == [{"id": "no-deletes", "before": NO_DELETES, "after": warned}]
    assert initial["from_number"] is None
    assert initial["diff"]["added"] == [NO_DELETES, EXTERNAL_MAIL]
    assert backwards["diff"]["added"] == [EXTERNAL_MAIL]


def test_every_change_is_audited_with_its_actor_and_diff(
    client: Client, migrated_url: str, org: IssuedKey
) -> None:
    people = People(migrated_url, org.org_id)
    owner = people.add(Role.OWNER)
    first = save(client, owner.headers, NO_DELETES, comment="start")
    second = save(client, owner.headers, NO_DELETES, NO_GPT4, activate=True)
    client.post(
        f"{VERSIONS}/{first['id']}/rollback",
        json={"comment": "gpt-4 is fine"},
        headers=owner.headers,
    )
    client.delete(f"{POLICIES}/active", headers=owner.headers)

    entries = audit_actions(client, owner.headers)

    assert [entry["action"] for entry in entries] == [
        "policy.version_saved",
        "policy.version_saved",
        "policy.activated",
        "policy.rolled_back",
        "policy.deactivated",
    ]
    assert {entry["actor_id"] for entry in entries} == {str(owner.user_id)}
    assert entries[0]["after"]["comment"] == "start"
    assert entries[1]["after"]["diff"]["added"] == [NO_GPT4]
    assert entries[2]["target_id"] == second["id"]
    assert entries[2]["after"]["diff"]["added"] == [NO_DELETES, NO_GPT4]
    assert entries[3]["before"] == {"active_number": 2}
    assert entries[3]["after"]["diff"]["removed"] == [NO_GPT4]
    assert entries[4]["after"]["diff"]["removed"] == [NO_DELETES]


def test_a_team_lead_changes_only_rules_scoped_to_their_teams(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    people = People(migrated_url, org.org_id)
    lead = people.add(Role.TEAM_LEAD)
    people.team("payments", lead)
    people.team("search")
    save(client, auth, NO_DELETES)
    ours = {**NO_GPT4, "scope": {"team": "payments"}}
    theirs = {**NO_GPT4, "id": "no-gpt4-search", "scope": {"team": ["payments", "search"]}}

    allowed = client.post(
        VERSIONS, json={"document": {"rules": [NO_DELETES, ours]}}, headers=lead.headers
    )
    refused = client.post(
        VERSIONS, json={"document": {"rules": [NO_DELETES, ours, theirs]}}, headers=lead.headers
    )
    org_wide = client.post(VERSIONS, json={"document": {"rules": [ours]}}, headers=lead.headers)

    assert allowed.status_code == 201, allowed.text
    assert (refused.status_code, refused.json()["code"]) == (403, "not_your_team")
    assert "no-gpt4-search" in refused.json()["detail"]
    assert (org_wide.status_code, org_wide.json()["code"]) == (403, "not_your_team")


def test_an_unknown_version_is_not_found(client: Client, auth: dict[str, str]) -> None:
    unknown = uuid.uuid4()

    for response in (
        client.get(f"{VERSIONS}/{unknown}", headers=auth),
        client.get(f"{VERSIONS}/{unknown}/diff", headers=auth),
        client.post(f"{VERSIONS}/{unknown}/activate", headers=auth),
        client.post(f"{VERSIONS}/{unknown}/rollback", json={}, headers=auth),
    ):
        assert (response.status_code, response.json()["code"]) == (404, "policy_version_not_found")


# -- dry runs -----------------------------------------------------------------------------------


def record_calls(client: Client, auth: dict[str, str]) -> dict[str, str]:
    """A run of the agent ``mailer`` in prod: five searches, a delete, two emails (one outside
    example.com), a gpt-4 call and a gpt-4o call, one second apart. Their span ids by label."""
    run = run_event(agent="mailer", environment="prod", tags=["eu"])
    calls = [
        *[("search", "tool", {"query": f"q{i}"}, None) for i in range(5)],
        ("delete_user", "tool", {"user_id": "u1"}, None),
        ("send_email", "tool", {"to": "bob@example.com"}, None),
        ("send_email", "tool", {"to": "eve@evil.org"}, None),
        ("chat gpt-4", "llm", [{"role": "user", "content": "hi"}], "gpt-4"),
        ("chat gpt-4o", "llm", [{"role": "user", "content": "hi"}], "gpt-4o"),
    ]
    spans, labels = [], {}
    for index, (name, kind, given, model) in enumerate(calls):
        fields: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "input": given,
            "started_at": (T0 + dt.timedelta(seconds=index)).isoformat(),
            "ended_at": (T0 + dt.timedelta(seconds=index, milliseconds=500)).isoformat(),
            "attributes": {"request_model": model, "max_tokens": 100} if model else {},
            "llm": {"model": model, "provider": "openai", "input_tokens": 5, "output_tokens": 5}
            if model
            else None,
        }
        span = span_event(run, **fields)
        spans.append(span)
        labels.setdefault(
            name if kind == "llm" or name != "send_email" else given["to"], span["id"]
        )
    response = client.post(INGEST, json=batch(run, *spans), headers=auth)
    assert response.status_code == 200, response.text
    return labels


def test_a_dry_run_reports_calls_newly_denied_needing_approval_and_allowed(
    client: Client, auth: dict[str, str]
) -> None:
    labels = record_calls(client, auth)
    save(client, auth, NO_GPT4, activate=True)
    search_budget = {
        "id": "search-budget",
        "match": {"kind": "tool", "name": "search"},
        "limit": {"calls_per_run": 3},
        "outcome": "deny",
    }
    shadow = {**NO_DELETES, "shadow": True}
    candidate = {"rules": [shadow, EXTERNAL_MAIL, search_budget]}

    response = client.post(f"{POLICIES}/dry-run", json={"document": candidate}, headers=auth)

    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["calls"], report["active_number"], report["candidate_number"]) == (10, 1, None)
    assert report["newly_denied"]["count"] == 2  # the 4th and 5th search
    assert [e["name"] for e in report["newly_denied"]["examples"]] == ["search", "search"]
    assert report["newly_denied"]["examples"][0]["candidate"]["rule"] == "search-budget"
    assert report["newly_requiring_approval"]["count"] == 1
    (mail,) = report["newly_requiring_approval"]["examples"]
    assert mail["span_id"] == labels["eve@evil.org"]
    assert (mail["agent"], mail["environment"]) == ("mailer", "prod")
    assert report["newly_warned"]["count"] == 1
    assert report["newly_warned"]["examples"][0]["span_id"] == labels["delete_user"]
    assert report["newly_allowed"]["count"] == 1
    (gpt4,) = report["newly_allowed"]["examples"]
    assert gpt4["span_id"] == labels["chat gpt-4"]
    assert (gpt4["model"], gpt4["active"]["rule"], gpt4["candidate"]["outcome"]) == (
        "gpt-4",
        "no-gpt4",
        "allow",
    )
    assert report["unchanged"] == 5


def test_a_dry_run_of_a_saved_version_replays_only_the_last_calls_asked(
    client: Client, auth: dict[str, str]
) -> None:
    record_calls(client, auth)
    version = save(
        client,
        auth,
        NO_GPT4,
        {"id": "cap", "match": {"kind": "llm"}, "limit": {"max_tokens": 50}, "outcome": "deny"},
    )

    response = client.post(
        f"{POLICIES}/dry-run", json={"version_id": version["id"], "calls": 2}, headers=auth
    )

    report = response.json()
    assert (report["calls"], report["candidate_number"], report["active_number"]) == (2, 1, None)
    assert report["newly_denied"]["count"] == 2
    assert {e["candidate"]["rule"] for e in report["newly_denied"]["examples"]} == {
        "no-gpt4",
        "cap",
    }


def test_a_dry_run_needs_exactly_one_candidate(client: Client, auth: dict[str, str]) -> None:
    neither = client.post(f"{POLICIES}/dry-run", json={}, headers=auth)
    invalid = client.post(
        f"{POLICIES}/dry-run", json={"document": {"rules": [{"id": "x"}]}}, headers=auth
    )

    assert (neither.status_code, neither.json()["code"]) == (400, "invalid_dry_run")
    assert (invalid.status_code, invalid.json()["code"]) == (400, "invalid_policy")
    assert invalid.json()["errors"][0]["field"] == "/rules/0/outcome"


# -- what the stream and the SDKs read ----------------------------------------------------------


def test_the_streams_snapshot_and_version_are_the_effective_set_and_its_revision(
    client: Client, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    def read() -> tuple[int, tuple[int, str]]:
        async def work(session: AsyncSession) -> tuple[int, tuple[int, str]]:
            version = await policies_version(session, org.org_id)
            return version, await policies_snapshot(session, org.org_id)

        with tenant(org.org_id):
            return run_in_session(migrated_url, work)

    before, (before_snapshot, empty) = read()
    assert (before, before_snapshot) == (0, 0)
    assert EffectivePolicy.model_validate_json(empty).model_dump() == {
        "org_id": org.org_id,
        "version": 0,
        "policy": None,
        "activated_at": None,
    }
    save(client, auth, NO_DELETES, EXTERNAL_MAIL, activate=True)

    version, (snapshot_version, data) = read()

    assert version == snapshot_version == 1
    assert data == client.get(EFFECTIVE, headers=auth).text


def test_each_change_of_the_active_set_is_announced_after_its_commit(
    settings: Settings, migrated_url: str, org: IssuedKey
) -> None:
    announced: list[tuple[uuid.UUID, int]] = []

    async def policies_changed(org_id: uuid.UUID) -> None:
        revision = scalar(  # read past the request's session: committed already
            migrated_url,
            "SELECT revision FROM policy_states WHERE org_id = :org",
            org=db_id(migrated_url, org_id),
        )
        announced.append((org_id, revision))

    auth = bearer(org.key)
    with TestClient(create_app(settings, policies_changed=policies_changed)) as client:
        first = save(client, auth, NO_DELETES)
        assert announced == []  # saved, not activated: nothing the SDKs enforce changed
        save(client, auth, NO_DELETES, NO_GPT4, activate=True)
        client.post(f"{VERSIONS}/{first['id']}/activate", headers=auth)
        client.post(f"{VERSIONS}/{first['id']}/rollback", json={}, headers=auth)
        client.delete(f"{POLICIES}/active", headers=auth)

    assert announced == [(org.org_id, revision) for revision in (1, 2, 3, 4)]


def test_a_real_sdk_polls_the_hubs_effective_set_with_its_ingest_key_and_enforces_it(
    hub_url: str, migrated_url: str, org: IssuedKey, tmp_path: Path
) -> None:
    ingest_key = limited_key(migrated_url, org.org_id, scopes=["ingest"]).key
    # Generous timeouts: a loaded machine may be slow; nothing here waits for them to pass.
    with httpx.Client(base_url=hub_url, headers=bearer(org.key), timeout=60.0) as admin:
        version = admin.post(VERSIONS, json={"document": {"rules": [NO_DELETES]}})
        assert version.status_code == 201, version.text
        activated = admin.post(f"{VERSIONS}/{version.json()['id']}/activate")
        assert activated.status_code == 200, activated.text
    source = HubStream(
        hub_url, ingest_key, poll_interval=0.2, retry_delay=0.05, request_timeout=60.0
    )

    with capture_events(
        hub_source=source, hub_url=hub_url, api_key=ingest_key, spool_dir=tmp_path
    ) as events:
        link = events.client.enforcer.link
        assert link.wait_until(lambda: link.snapshot.get("policies") is not None, 60.0)

        with pytest.raises(PolicyViolation) as refused:
            delete_user("u1")
        assert refused.value.rule == "no-deletes"
        assert link.snapshot.etags["policies"] == f'"{org.org_id}-policies-1"'


@tool
def delete_user(user_id: str) -> str:
    return f"deleted {user_id}"
