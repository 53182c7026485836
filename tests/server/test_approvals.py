"""``/api/v1/approvals``: asking (idempotent by key), the queue and its filters, decisions one
by one and in bulk (edits checked against the active policy, self-approval, team reach),
expiry read at once, claims at most once (concurrent ones included), escalation, notifications,
the audit log, the stream's ``approvals`` event and isolation between orgs; on SQLite and
PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from agentops_sdk.contract.approvals import ApprovalFeed, approval_key
from agentops_sdk.contract.arguments import canonical_arguments
from agentops_server import Settings, create_app
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, assert_problem, audit_entries, bearer
from tests.server.conftest import make_org
from tests.server.principals import People, Person, limited_key
from tests.server.servers import serving
from tests.server.streams import last_of, listening
from tests.server.test_agents import register
from tests.server.test_policies import save

APPROVALS = "/api/v1/approvals"
T = TypeVar("T")


def ask_body(
    *,
    run_id: str = "run-1",
    name: str = "send_email",
    arguments: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An :class:`ApprovalAsk` as the SDK sends it."""
    arguments = {"to": "ceo@rival.com", "body": "hi"} if arguments is None else arguments
    frozen = canonical_arguments(arguments)
    assert frozen is not None
    sha = frozen[1]
    return {
        "key": approval_key(run_id, name, sha),
        "agent": "mailer",
        "environment": "prod",
        "run_id": run_id,
        "span_id": f"span-{uuid.uuid4().hex[:8]}",
        "kind": "tool",
        "name": name,
        "arguments": arguments,
        "arguments_sha256": sha,
        "rule": "external-mail",
        "reason": "Mail outside the company needs a human.",
        "expires_in": 3600,
        **fields,
    }


@pytest.fixture
def sdk(migrated_url: str, org: IssuedKey) -> dict[str, str]:
    """The SDK's key: ingest and approvals (ask, read, claim)."""
    return bearer(limited_key(migrated_url, org.org_id, scopes=["ingest", "approvals:write"]).key)


def ask(client: Client, sdk: dict[str, str], status: int = 201, **fields: Any) -> dict[str, Any]:
    response = client.post(APPROVALS, json=ask_body(**fields), headers=sdk)
    assert response.status_code == status, response.text
    asked: dict[str, Any] = response.json()
    return asked


def decide(
    client: Client,
    headers: dict[str, str],
    approval_id: str,
    decision: str = "approve",
    **body: Any,
) -> Any:
    return client.post(
        f"{APPROVALS}/{approval_id}/decision", json={"decision": decision, **body}, headers=headers
    )


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """``probe()``'s first truthy answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def kinds_of(client: Client, person: Person) -> list[str]:
    response = client.get("/api/v1/notifications", headers=person.headers)
    assert response.status_code == 200, response.text
    return [item["kind"] for item in response.json()["items"]]


# -- asking ----------------------------------------------------------------------------------------


def test_asking_again_with_the_same_key_returns_the_request_already_held(
    client: Client, sdk: dict[str, str], owner: Person
) -> None:
    before = dt.datetime.now(dt.UTC)
    first = ask(client, sdk)
    again = ask(client, sdk, status=200, span_id="span-retried")
    other = ask(client, sdk, run_id="run-2")

    assert first["state"] == "pending"
    assert again["id"] == first["id"]
    assert again["span_id"] == first["span_id"]
    assert other["id"] != first["id"]
    expires = dt.datetime.fromisoformat(first["expires_at"])
    assert before + dt.timedelta(seconds=3599) <= expires <= before + dt.timedelta(seconds=3700)
    [entry, _] = audit_entries(client, owner.headers, action="approval.requested")[::-1]
    assert entry["target_id"] == first["id"]
    assert entry["after"]["state"] == "pending"


def test_a_key_not_made_from_the_run_name_and_hash_is_refused(
    client: Client, sdk: dict[str, str]
) -> None:
    body = ask_body()
    body["key"] = "0" * 64

    assert_problem(client.post(APPROVALS, json=body, headers=sdk), 400, "invalid_approval_key")


def test_a_new_request_notifies_the_reviewers_in_app_and_by_email(
    client: Client, sdk: dict[str, str], owner: Person, admin: Person
) -> None:
    asked = ask(client, sdk)

    eventually(lambda: "approval.requested" in kinds_of(client, owner), "the owner is told")
    assert "approval.requested" in kinds_of(client, admin)
    [item] = client.get("/api/v1/notifications", headers=owner.headers).json()["items"]
    assert item["data"]["approval_id"] == asked["id"]
    assert item["data"]["rule"] == "external-mail"


# -- the queue -------------------------------------------------------------------------------------


def test_the_queue_lists_by_state_agent_team_rule_run_and_time_a_page_at_a_time(
    client: Client, sdk: dict[str, str], owner: Person, people: People
) -> None:
    team = people.team("billing")
    register(client, owner.headers, "invoicer", team_id=str(team))
    first = ask(client, sdk, run_id="a")
    middle = ask(client, sdk, run_id="b", agent="invoicer", rule="big-refund")
    decide(client, owner.headers, first["id"], "reject")
    last = ask(client, sdk, run_id="c", expires_in=0.01)

    def ids(**params: Any) -> list[str]:
        response = client.get(APPROVALS, params=params, headers=owner.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    eventually(lambda: ids(state="expired") == [last["id"]], "the short request expires")
    assert ids() == [last["id"], middle["id"], first["id"]]
    assert ids(state="pending") == [middle["id"]]
    assert ids(state="rejected") == [first["id"]]
    assert ids(agent="invoicer") == ids(team="billing") == ids(rule="big-refund") == [middle["id"]]
    assert ids(run_id="a") == [first["id"]]
    assert ids(created_after=middle["created_at"], created_before=last["created_at"]) == [
        middle["id"]
    ]
    page = client.get(APPROVALS, params={"limit": 2}, headers=owner.headers).json()
    rest = client.get(
        APPROVALS, params={"limit": 2, "cursor": page["next_cursor"]}, headers=owner.headers
    ).json()
    assert [i["id"] for i in page["items"] + rest["items"]] == ids()
    assert rest["next_cursor"] is None


# -- deciding --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "state"),
    [("approve", "approved"), ("reject", "rejected"), ("cancel", "cancelled")],
)
def test_a_reviewer_decides_once_with_a_comment_audited(
    client: Client, sdk: dict[str, str], owner: Person, decision: str, state: str
) -> None:
    asked = ask(client, sdk)

    decided = decide(client, owner.headers, asked["id"], decision, comment="checked")
    again = decide(client, owner.headers, asked["id"], "approve")

    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["state"], body["decided_by"], body["comment"]) == (state, owner.email, "checked")
    assert client.get(f"{APPROVALS}/{asked['id']}", headers=sdk).json()["state"] == state
    assert_problem(again, 409, "approval_decided")
    [entry] = audit_entries(client, owner.headers, action="approval.decided")
    assert entry["before"]["state"] == "pending"
    assert entry["after"]["state"] == state
    assert entry["actor_id"] == str(owner.user_id)


def test_edited_arguments_are_checked_against_the_active_policy(
    client: Client, sdk: dict[str, str], owner: Person
) -> None:
    no_rivals = {
        "id": "no-rivals",
        "match": {"kind": "tool", "name": "send_email"},
        "when": {"argument": "to", "regex": r"@rival\.com$"},
        "outcome": "deny",
        "message": "Never mail a rival.",
    }
    save(client, owner.headers, no_rivals, activate=True)
    asked = ask(client, sdk, arguments={"to": "someone@partner.org"})

    denied = decide(client, owner.headers, asked["id"], edited_arguments={"to": "x@rival.com"})
    allowed = decide(client, owner.headers, asked["id"], edited_arguments={"to": "a@example.com"})

    problem = assert_problem(denied, 422, "edit_denied_by_policy")
    assert problem["rule"] == "no-rivals"
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["state"] == "approved_with_edits"
    assert allowed.json()["edited_arguments"] == {"to": "a@example.com"}
    # Edits that leave a field out keep the call's own value, and are judged with it.
    rival = ask(client, sdk, run_id="rival", arguments={"to": "y@rival.com", "body": "hi"})
    body_only = decide(client, owner.headers, rival["id"], edited_arguments={"body": "hello"})
    assert assert_problem(body_only, 422, "edit_denied_by_policy")["rule"] == "no-rivals"
    assert_problem(
        decide(
            client,
            owner.headers,
            ask(client, sdk, run_id="r")["id"],
            "reject",
            edited_arguments={"to": "a@example.com"},
        ),
        400,
        "invalid_edit",
    )


def test_a_bulk_decision_decides_each_request_and_reports_each_refusal(
    client: Client, sdk: dict[str, str], owner: Person
) -> None:
    one, two = ask(client, sdk, run_id="1"), ask(client, sdk, run_id="2")
    decide(client, owner.headers, two["id"], "reject")
    missing = str(uuid.uuid4())

    response = client.post(
        f"{APPROVALS}/decisions",
        json={"ids": [one["id"], two["id"], missing], "decision": "approve", "comment": "ok"},
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["id"], i["ok"], i["code"]) for i in items] == [
        (one["id"], True, None),
        (two["id"], False, "approval_decided"),
        (missing, False, "approval_not_found"),
    ]
    assert items[0]["request"]["state"] == "approved"
    assert len(audit_entries(client, owner.headers, action="approval.decided")) == 2


def test_the_agents_owner_may_approve_only_when_the_rule_allows_self_approval(
    client: Client, sdk: dict[str, str], owner: Person, admin: Person
) -> None:
    register(client, owner.headers, "mailer", owner_id=str(admin.user_id))
    held = ask(client, sdk, run_id="1")
    allowed = ask(client, sdk, run_id="2", allow_self_approval=True)

    assert_problem(decide(client, admin.headers, held["id"]), 403, "self_approval")
    assert decide(client, admin.headers, held["id"], "reject").status_code == 200
    assert decide(client, admin.headers, allowed["id"]).json()["state"] == "approved"


def test_a_team_lead_decides_for_their_teams_agents_only(
    client: Client, sdk: dict[str, str], owner: Person, people: People
) -> None:
    lead = people.add(Role.TEAM_LEAD)
    mine, theirs = people.team("mine", lead), people.team("theirs")
    register(client, owner.headers, "ours", team_id=str(mine))
    register(client, owner.headers, "foreign", team_id=str(theirs))
    inside = ask(client, sdk, run_id="1", agent="ours")
    outside = ask(client, sdk, run_id="2", agent="foreign")
    member = people.add(Role.MEMBER)

    assert decide(client, lead.headers, inside["id"]).json()["state"] == "approved"
    assert_problem(decide(client, lead.headers, outside["id"]), 403, "not_your_team")
    assert_problem(decide(client, member.headers, outside["id"]), 403, "permission_denied")
    assert_problem(decide(client, sdk, outside["id"]), 403, "insufficient_scope")


# -- expiry ----------------------------------------------------------------------------------------


def test_a_request_past_its_time_reads_expired_and_can_no_longer_be_decided(
    client: Client, sdk: dict[str, str], owner: Person
) -> None:
    asked = ask(client, sdk, expires_in=0.05)

    read = eventually(
        lambda: (
            (r := client.get(f"{APPROVALS}/{asked['id']}", headers=sdk).json())["state"]
            == "expired"
            and r
        ),
        "the request reads expired",
    )
    refused = decide(client, owner.headers, asked["id"])

    assert (read["decided_by"], read["decided_at"]) == ("system", read["expires_at"])
    assert_problem(refused, 409, "approval_expired")
    [entry] = audit_entries(client, owner.headers, action="approval.expired")
    assert entry["actor_type"] == "system"
    assert entry["after"]["state"] == "expired"


def test_expiry_comes_to_the_rules_outcome_but_unfrozen_arguments_always_to_deny(
    client: Client, sdk: dict[str, str]
) -> None:
    allow = ask(client, sdk, run_id="1", expires_in=0.05, on_expiry="allow")
    body = ask_body(run_id="2", expires_in=0.05, on_expiry="allow", arguments_valid=False)
    body["arguments"] = None
    unfrozen = client.post(APPROVALS, json=body, headers=sdk).json()

    def claim(approval: dict[str, Any]) -> Any:
        return client.post(
            f"{APPROVALS}/{approval['id']}/claim", json={"claimant": "sdk-1"}, headers=sdk
        )

    eventually(lambda: claim(allow).status_code == 200, "the expired-to-allow call is claimed")
    eventually(
        lambda: (
            client.get(f"{APPROVALS}/{unfrozen['id']}", headers=sdk).json()["state"] == "expired"
        ),
        "the unfrozen request expires",
    )
    assert unfrozen["on_expiry"] == "deny"
    problem = assert_problem(claim(unfrozen), 409, "approval_not_approved")
    assert problem["state"] == "expired"


# -- claiming --------------------------------------------------------------------------------------


def test_an_approval_is_claimed_once_and_a_pending_one_not_at_all(
    client: Client, sdk: dict[str, str], owner: Person
) -> None:
    asked = ask(client, sdk)
    url = f"{APPROVALS}/{asked['id']}/claim"

    pending = client.post(url, json={"claimant": "sdk-1"}, headers=sdk)
    decide(client, owner.headers, asked["id"])
    first = client.post(url, json={"claimant": "sdk-1"}, headers=sdk)
    second = client.post(url, json={"claimant": "sdk-2"}, headers=sdk)

    assert_problem(pending, 409, "approval_not_approved")
    assert first.status_code == 200, first.text
    assert first.json()["claimed_by"] == "sdk-1"
    assert_problem(second, 409, "approval_claimed")
    [entry] = audit_entries(client, owner.headers, action="approval.claimed")
    assert entry["after"]["claimed_by"] == "sdk-1"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_of_many_concurrent_claims_exactly_one_wins(
    hub_url: str, client: Client, sdk: dict[str, str], owner: Person
) -> None:
    asked = ask(client, sdk)
    decide(client, owner.headers, asked["id"])
    start = threading.Barrier(8)

    def claim(n: int) -> int:
        with httpx.Client(base_url=hub_url, headers=sdk, timeout=60) as http:
            start.wait(10)
            url = f"{APPROVALS}/{asked['id']}/claim"
            return http.post(url, json={"claimant": f"sdk-{n}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(claim, range(8)))

    assert sorted(statuses) == [200] + [409] * 7


# -- escalation, the stream, isolation -------------------------------------------------------------


def test_a_request_still_pending_after_escalate_after_is_escalated_to_admins(
    client: Client, sdk: dict[str, str], owner: Person, people: People
) -> None:
    lead = people.add(Role.TEAM_LEAD)
    # 3 s: room for the decision to land before the first one is due, on a loaded machine.
    decided_early = ask(client, sdk, run_id="1", escalate_after=3.0)
    decide(client, owner.headers, decided_early["id"], "reject")
    asked = ask(client, sdk, run_id="2", escalate_after=3.0)  # due after the first one

    escalated = eventually(
        lambda: (
            (r := client.get(f"{APPROVALS}/{asked['id']}", headers=sdk).json())["escalated_at"]
            and r
        ),
        "the request is escalated",
    )
    eventually(lambda: "approval.escalated" in kinds_of(client, owner), "the owner is told")

    assert escalated["state"] == "pending"
    assert (
        client.get(f"{APPROVALS}/{decided_early['id']}", headers=sdk).json()["escalated_at"] is None
    )
    [entry] = audit_entries(client, owner.headers, action="approval.escalated")
    assert entry["target_id"] == asked["id"]
    assert "approval.escalated" not in kinds_of(client, lead)  # admins and owners only


@pytest.fixture
def streaming_hub(settings: Settings) -> Iterator[str]:
    """A served hub whose streams stay open."""
    with serving(create_app(dataclasses.replace(settings, stream_max_age=30))) as url:
        yield url


def test_the_stream_carries_a_decision_to_the_waiting_sdk_at_once(
    streaming_hub: str, migrated_url: str, org: IssuedKey, owner: Person
) -> None:
    key = limited_key(migrated_url, org.org_id, scopes=["ingest", "approvals:write"]).key
    with httpx.Client(base_url=streaming_hub, timeout=60) as http:
        asked = http.post(APPROVALS, json=ask_body(), headers=bearer(key)).json()
        with listening(streaming_hub, key) as listener:
            first = listener.wait_for(last_of("approvals"), "the approvals snapshot")
            assert ApprovalFeed.model_validate_json(first.data).requests == ()
            started = time.monotonic()
            decided = decide(http, owner.headers, asked["id"], comment="go")  # type: ignore[arg-type]
            assert decided.status_code == 200, decided.text
            event = listener.wait_for(
                lambda events: next(
                    (e for e in events if e.event == "approvals" and asked["id"] in e.data), None
                ),
                "the decision",
            )
            heard = time.monotonic() - started

    feed = ApprovalFeed.model_validate_json(event.data)
    [request] = feed.requests
    assert (str(request.id), request.state, request.comment) == (asked["id"], "approved", "go")
    assert int(feed.version) > int(ApprovalFeed.model_validate_json(first.data).version)
    assert heard < 5  # pushed after the commit, not found by a poll


def test_another_org_can_neither_read_decide_nor_claim_a_request(
    client: Client, sdk: dict[str, str], migrated_url: str
) -> None:
    asked = ask(client, sdk)
    intruder = bearer(make_org(migrated_url, "initech").key)

    assert_problem(
        client.get(f"{APPROVALS}/{asked['id']}", headers=intruder), 404, "approval_not_found"
    )
    assert_problem(decide(client, intruder, asked["id"]), 404, "approval_not_found")
    claimed = client.post(
        f"{APPROVALS}/{asked['id']}/claim", json={"claimant": "x"}, headers=intruder
    )
    assert_problem(claimed, 404, "approval_not_found")
    assert client.get(APPROVALS, headers=intruder).json()["items"] == []
    assert ask(client, intruder, status=201)["id"] != asked["id"]  # keys are per org
