"""Human approvals with real processes: an ``agentops-hub serve`` process on SQLite or
PostgreSQL (one per module and database, each test with an org of its own) and agent processes
(``agent_approvals``) whose ``send_email`` tool needs a reviewer's approval for mail outside
example.com, by a policy activated through the hub's API. Reviewers decide through the API as
members signed in.

Specification: the agent's call blocks until a reviewer decides, and the tool's body runs once,
after the approval, which the SDK claims; it runs with the arguments a reviewer edited, and the
hub refuses an edit the active policy denies; a rejection reaches the agent as
``ApprovalDenied`` with the reviewer's comment, or as the call's result when the rule says so;
an unanswered request expires to the rule's outcome; an agent killed while its request is
pending and started again on the same run finds the same request (no second one) and runs the
call once it is approved; a retry of an approved call that ran is refused.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentops_sdk.enforcement.approvals import REQUESTED_EVENT
from agentops_server.security.permissions import Role
from tests.e2e.agents import REACH, AgentProcess, agent_starter
from tests.e2e.hubs import VISIBLE, Policies, SharedHub
from tests.server.api import assert_problem
from tests.server.conftest import make_org
from tests.server.principals import People, Person
from tests.server.servers import wait_until

APPROVALS = "/api/v1/approvals"
AGENT = "mailer"
OUTSIDE = {"to": "bob@other.org", "body": "hi"}
EXTERNAL_MAIL: dict[str, Any] = {
    "id": "external-mail",
    "match": {"kind": "tool", "name": "send_email"},
    "when": {"argument": "to", "not_regex": r"@example\.com$"},
    "outcome": "require_approval",
    "message": "Mail outside the company needs a person's approval.",
}
NO_RIVALS = {
    "id": "no-rivals",
    "match": {"kind": "tool", "name": "send_email"},
    "when": {"argument": "to", "regex": r"@rival\.com$"},
    "outcome": "deny",
    "message": "No mail to rivals.",
}


def external_mail(**approval: Any) -> dict[str, Any]:
    """The approval rule with ``approval`` settings."""
    return {**EXTERNAL_MAIL, "approval": approval}


@dataclasses.dataclass(frozen=True)
class Org:
    """A test's own org on the shared hub: its policies (the org's admin key), a reviewer (an
    admin) and the agent's registry owner (another admin), and the record of the tool's runs."""

    policies: Policies
    reviewer: Person
    owner: Person
    markers: Path
    key: str
    org_id: uuid.UUID

    @property
    def http(self) -> httpx.Client:
        return self.policies.http

    def sent(self) -> list[dict[str, Any]]:
        """Each run of the tool's body, in order: its arguments and when it started."""
        if not self.markers.exists():
            return []
        return [json.loads(line) for line in self.markers.read_text().splitlines()]

    def requests(self, **filters: str) -> list[dict[str, Any]]:
        """The queue (``GET /api/v1/approvals``) with ``filters``, as the reviewer reads it."""
        response = self.http.get(APPROVALS, params=filters, headers=self.reviewer.headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def one_pending(self, within: float = REACH) -> dict[str, Any]:
        """The one pending request, once there is one; fails if none comes ``within`` s."""
        found = wait_until(lambda: self.requests(state="pending"), within)
        assert found, f"no pending approval request within {within} s"
        (request,) = found
        return request

    def read(self, request_id: str) -> dict[str, Any]:
        response = self.http.get(f"{APPROVALS}/{request_id}", headers=self.reviewer.headers)
        assert response.status_code == 200, response.text
        request: dict[str, Any] = response.json()
        return request

    def decide(
        self, request_id: str, decision: str, by: Person | None = None, **body: Any
    ) -> httpx.Response:
        """``by`` (the reviewer by default) deciding the request through the API."""
        return self.http.post(
            f"{APPROVALS}/{request_id}/decision",
            json={"decision": decision, **body},
            headers=(by or self.reviewer).headers,
        )

    def approval_decision(self, run_id: str, since: float) -> dict[str, Any]:
        """The approval stage's decision on the run's ``send_email`` span, once the hub has
        it; fails unless it is readable ``VISIBLE`` seconds after ``since``."""

        def found() -> list[dict[str, Any]]:
            decisions = self.policies.decisions(run_id, "send_email")
            return [d for d in decisions if d["stage"] == "approval"]

        decisions = wait_until(found, since + VISIBLE - time.monotonic())
        assert decisions, f"no approval decision on send_email within {VISIBLE} s"
        (decision,) = decisions
        return decision


@pytest.fixture
def org(shared_hub: SharedHub, tmp_path: Path) -> Iterator[Org]:
    """An org of this test's own on the shared hub, with the agent in its registry."""
    issued = make_org(shared_hub.database_url, f"acme {uuid.uuid4().hex[:8]}")
    people = People(shared_hub.database_url, issued.org_id)
    reviewer = people.add(Role.ADMIN, email=f"reviewer-{uuid.uuid4().hex[:8]}@example.com")
    owner = people.add(Role.ADMIN)
    policies = Policies(shared_hub.url, issued.key)
    registered = policies.http.post(
        "/api/v1/agents", json={"name": AGENT, "owner_id": str(owner.user_id)}
    )
    assert registered.status_code == 201, registered.text
    yield Org(policies, reviewer, owner, tmp_path / "sent.jsonl", issued.key, issued.org_id)
    policies.http.close()


@pytest.fixture
def start_agent(
    shared_hub: SharedHub, org: Org, tmp_path: Path
) -> Iterator[Callable[[], AgentProcess]]:
    """``start_agent()``: an ``agent_approvals`` process of ``org`` on the shared hub."""
    variables = {"E2E_MARKERS": str(org.markers)}
    with agent_starter("tests.e2e.agent_approvals", tmp_path / "spool", variables) as start:
        yield lambda: start(shared_hub.url, org.key)


def started_with(
    org: Org, *rules: dict[str, Any], start: Callable[[], AgentProcess]
) -> AgentProcess:
    """An agent started once ``rules`` are the org's active policy, holding them."""
    version = org.policies.activate(*rules)
    agent = start()
    assert agent.ready["policy"] == version
    return agent


def arguments(sent: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(run["to"], run["body"]) for run in sent]


# -- approve ---------------------------------------------------------------------------------------


def test_an_approved_call_blocks_until_the_reviewer_approves_then_runs_once_and_is_claimed(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    agent = started_with(org, EXTERNAL_MAIL, start=start_agent)
    assert agent.ask(send={"to": "team@example.com"})["outcome"] == "ok", "inside: no approval"

    agent.send(send=OUTSIDE)
    request = org.one_pending()
    assert (request["agent"], request["name"], request["rule"]) == (
        AGENT,
        "send_email",
        "external-mail",
    )
    assert request["arguments"] == OUTSIDE
    assert request["reason"] == "Mail outside the company needs a person's approval."
    assert_problem(org.decide(request["id"], "approve", by=org.owner), 403, "self_approval")
    assert arguments(org.sent()) == [("team@example.com", "hello")], "blocked while pending"

    approved = org.decide(request["id"], "approve", comment="fine")
    decided = time.monotonic()
    assert approved.status_code == 200, approved.text
    answer = agent.answer()

    assert (answer["outcome"], answer["result"]) == ("ok", "sent to bob@other.org")
    assert arguments(org.sent()) == [("team@example.com", "hello"), ("bob@other.org", "hi")]
    held = org.read(request["id"])
    assert held["state"] == "approved"
    assert held["run_id"] == answer["run_id"]
    assert held["claimed_at"] is not None
    decision = org.approval_decision(answer["run_id"], decided)
    assert (decision["outcome"], decision["rule"]) == ("allow", "external-mail")
    assert decision["details"]["request_id"] == request["id"]
    assert decision["details"]["state"] == "approved"
    assert decision["details"]["decided_by"] == org.reviewer.email
    assert decision["details"]["comment"] == "fine"
    assert decision["details"]["claimed_by"] == held["claimed_by"]
    assert decision["details"]["waited_ms"] > 0


def test_an_approval_with_edits_runs_the_tool_with_them_and_an_edit_the_policy_denies_is_refused(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    agent = started_with(org, EXTERNAL_MAIL, NO_RIVALS, start=start_agent)
    agent.send(send=OUTSIDE)
    request = org.one_pending()

    to_rival = {"to": "ceo@rival.com", "body": "hi"}
    refused = org.decide(request["id"], "approve", edited_arguments=to_rival)
    assert_problem(refused, 422, "edit_denied_by_policy")
    assert refused.json()["rule"] == "no-rivals"
    assert org.read(request["id"])["state"] == "pending"
    assert org.sent() == []

    edited = {"to": "bob@other.org", "body": "hi, reviewed"}
    approved = org.decide(request["id"], "approve", edited_arguments=edited)
    decided = time.monotonic()
    assert approved.status_code == 200, approved.text
    answer = agent.answer()

    assert (answer["outcome"], answer["result"]) == ("ok", "sent to bob@other.org")
    assert arguments(org.sent()) == [("bob@other.org", "hi, reviewed")], "once, as edited"
    held = org.read(request["id"])
    assert (held["state"], held["edited_arguments"]) == ("approved_with_edits", edited)
    assert held["claimed_at"] is not None
    decision = org.approval_decision(answer["run_id"], decided)
    assert decision["outcome"] == "allow"
    assert (decision["details"]["state"], decision["details"]["edited"]) == (
        "approved_with_edits",
        True,
    )


# -- reject ----------------------------------------------------------------------------------------


def test_a_rejection_reaches_the_agent_as_approval_denied_with_the_reviewers_comment(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    agent = started_with(org, EXTERNAL_MAIL, start=start_agent)
    agent.send(send=OUTSIDE)
    request = org.one_pending()

    rejected = org.decide(request["id"], "reject", comment="not to customers")
    decided = time.monotonic()
    assert rejected.status_code == 200, rejected.text
    answer = agent.answer()

    assert (answer["outcome"], answer["rule"]) == ("ApprovalDenied", "external-mail")
    assert answer["message"] == (
        f"send_email was rejected by {org.reviewer.email}: not to customers"
    )
    assert org.sent() == []
    assert org.read(request["id"])["claimed_at"] is None
    decision = org.approval_decision(answer["run_id"], decided)
    assert (decision["outcome"], decision["details"]["state"]) == ("deny", "rejected")
    assert decision["details"]["comment"] == "not to customers"


def test_a_rejection_the_rule_returns_as_result_is_the_calls_return_value_and_nothing_runs(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    agent = started_with(org, external_mail(on_reject="result"), start=start_agent)
    agent.send(send=OUTSIDE)
    request = org.one_pending()
    assert request["on_reject"] == "result"

    assert org.decide(request["id"], "reject", comment="ask first").status_code == 200
    answer = agent.answer()

    assert answer["outcome"] == "ok"
    assert answer["result"] == f"send_email was rejected by {org.reviewer.email}: ask first"
    assert answer["started"] is None
    assert org.sent() == []


# -- expire ----------------------------------------------------------------------------------------


def test_an_unanswered_request_expires_to_deny_and_the_tool_never_runs(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    agent = started_with(org, external_mail(expires_in=2), start=start_agent)
    asked = time.time()
    agent.send(send=OUTSIDE)
    request = org.one_pending()

    answer = agent.answer(within=2 + REACH)
    answered = time.time()

    assert (answer["outcome"], answer["rule"]) == ("ApprovalDenied", "external-mail")
    assert "got no answer before its approval request expired" in answer["message"]
    assert answered - asked >= 2, "it waited for the reviewer until the request expired"
    assert org.sent() == []
    assert org.read(request["id"])["state"] == "expired"
    assert_problem(org.decide(request["id"], "approve"), 409, "approval_expired")
    assert org.sent() == []


def test_an_unanswered_request_expires_to_allow_when_the_rule_says_so_and_runs_once(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    agent = started_with(org, external_mail(expires_in=2, on_expiry="allow"), start=start_agent)
    agent.send(send=OUTSIDE)
    request = org.one_pending()

    answer = agent.answer(within=2 + REACH)

    assert (answer["outcome"], answer["result"]) == ("ok", "sent to bob@other.org")
    assert arguments(org.sent()) == [("bob@other.org", "hi")]
    assert org.read(request["id"])["state"] == "expired"


# -- at most once ----------------------------------------------------------------------------------


def test_an_agent_killed_while_pending_resumes_the_run_finds_the_same_request_and_runs_once(
    shared_hub: SharedHub, org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    run_id = str(uuid.uuid4())
    first = started_with(org, EXTERNAL_MAIL, start=start_agent)
    first.send(send=OUTSIDE, run_id=run_id)
    request = org.one_pending()
    assert request["run_id"] == run_id
    first.kill()

    second = start_agent()
    second.send(send=OUTSIDE, run_id=run_id)
    shared_hub.log.wait_for(
        lambda line: _held_already(line, org),
        "the resumed agent's ask answered with the request already held (200)",
    )
    assert [r["id"] for r in org.requests(run_id=run_id)] == [request["id"]], "no second one"
    assert org.read(request["id"])["state"] == "pending"

    assert org.decide(request["id"], "approve").status_code == 200
    decided = time.monotonic()
    answer = second.answer()

    assert answer["outcome"] == "ok"
    assert answer["run_id"] == run_id
    assert arguments(org.sent()) == [("bob@other.org", "hi")], "once in total"
    assert org.read(request["id"])["claimed_at"] is not None
    assert org.approval_decision(run_id, decided)["details"]["request_id"] == request["id"]
    (requested,) = org.policies.events(run_id, "send_email", REQUESTED_EVENT)
    assert (requested["request_id"], requested["state"]) == (request["id"], "pending")


def test_a_retry_of_an_approved_call_that_ran_is_refused_and_the_tool_ran_once(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    agent = started_with(org, EXTERNAL_MAIL, start=start_agent)
    agent.send(send=OUTSIDE)
    request = org.one_pending()
    assert org.decide(request["id"], "approve").status_code == 200
    first = agent.answer()
    assert first["outcome"] == "ok"

    retried = agent.ask(send=OUTSIDE, run_id=first["run_id"])

    assert retried["outcome"] == "ApprovalDenied"
    assert "this approval was used by an earlier call" in retried["message"]
    assert arguments(org.sent()) == [("bob@other.org", "hi")]
    assert [r["id"] for r in org.requests(run_id=first["run_id"])] == [request["id"]]


def _held_already(line: str, org: Org) -> bool:
    """Whether the hub's log ``line`` says it answered an ask of ``org`` with a request it held
    already (``200``, not ``201``)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return (
        entry.get("event") == "request"
        and entry.get("method") == "POST"
        and entry.get("path") in (APPROVALS, APPROVALS + "/")
        and entry.get("status") == 200
        and entry.get("org_id") == str(org.org_id)
    )
