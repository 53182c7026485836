"""Policies with real processes: an ``agentops-hub serve`` process on SQLite or PostgreSQL (one
per module and database, each test with an org of its own) and an agent process
(``agent_policies``) using the SDK with the hub's URL and an API key.

Specification: a policy set activated through the hub's API refuses a denied tool before its
body runs, the agent sees ``PolicyViolation`` with the rule's message, and the span the hub
stores names the rule and the policy version within 5 s; a warn rule, or a rule in shadow mode,
blocks nothing and is recorded; a change through the API reaches a running agent, and a
rollback undoes it, without a restart; the OpenAI client asking for a denied model sends no
request.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.agents import AgentProcess, agent_starter
from tests.e2e.hubs import VISIBLE, Policies, SharedHub
from tests.server.conftest import make_org

NO_DELETES = {
    "id": "no-deletes",
    "match": {"kind": "tool", "name": "delete_*"},
    "outcome": "deny",
    "message": "Deleting is not allowed for agents.",
}
NO_LOOKUPS = {
    "id": "no-lookups",
    "match": {"kind": "tool", "name": "lookup"},
    "outcome": "deny",
    "message": "Lookups are off for now.",
}


@dataclasses.dataclass(frozen=True)
class Org:
    """A test's own org on the shared hub: its all-scopes key, its policies API, and where its
    agent's tools mark each run of their bodies."""

    key: str
    policies: Policies
    markers: Path

    def ran(self) -> list[str]:
        """The tools whose bodies ran, in order."""
        return self.markers.read_text().split() if self.markers.exists() else []


@pytest.fixture
def org(shared_hub: SharedHub, tmp_path: Path) -> Iterator[Org]:
    """An org of this test's own on the shared hub (its policies are its own)."""
    issued = make_org(shared_hub.database_url, f"acme {uuid.uuid4().hex[:8]}")
    policies = Policies(shared_hub.url, issued.key)
    yield Org(issued.key, policies, tmp_path / "ran.txt")
    policies.http.close()


@pytest.fixture
def start_agent(
    shared_hub: SharedHub, org: Org, tmp_path: Path
) -> Iterator[Callable[[], AgentProcess]]:
    """``start_agent()``: an ``agent_policies`` process of ``org`` on the shared hub."""
    variables = {"E2E_MARKERS": str(org.markers)}
    with agent_starter("tests.e2e.agent_policies", tmp_path / "spool", variables) as start:
        yield lambda: start(shared_hub.url, org.key)


# -- deny, warn ------------------------------------------------------------------------------------


def test_a_denied_tool_never_runs_the_agent_sees_the_rules_message_and_the_hub_the_rule(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    version = org.policies.activate(NO_DELETES)
    agent = start_agent()
    assert agent.ask(policy=version)["policy"] == version

    refused = agent.ask(call="delete_user")
    asked = time.monotonic()
    allowed = agent.ask(call="lookup")

    assert (refused["outcome"], refused["rule"]) == ("PolicyViolation", "no-deletes")
    assert refused["message"] == "Deleting is not allowed for agents."
    assert allowed["outcome"] == "ok"
    assert org.ran() == ["lookup"], "the denied tool's body never ran"
    decision = org.policies.decision_within(refused["run_id"], "delete_user", asked)
    assert (decision["outcome"], decision["stage"], decision["rule"]) == (
        "deny",
        "policy",
        "no-deletes",
    )
    assert decision["details"]["policy_version"] == version
    assert org.policies.decisions(allowed["run_id"], "lookup") == [], (
        "a plain allow is not recorded"
    )


def test_warn_and_shadow_rules_block_nothing_and_the_hub_records_what_they_decided(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    watch = {"id": "watch-lookups", "match": {"kind": "tool", "name": "lookup"}, "outcome": "warn"}
    version = org.policies.activate(watch, {**NO_DELETES, "shadow": True})
    agent = start_agent()
    assert agent.ask(policy=version)["policy"] == version

    warned = agent.ask(call="lookup")
    shadowed = agent.ask(call="delete_user")
    asked = time.monotonic()

    assert (warned["outcome"], shadowed["outcome"]) == ("ok", "ok")
    assert org.ran() == ["lookup", "delete_user"]
    on_lookup = org.policies.decision_within(warned["run_id"], "lookup", asked)
    on_delete = org.policies.decision_within(shadowed["run_id"], "delete_user", asked)
    assert (on_lookup["outcome"], on_lookup["rule"]) == ("warn", "watch-lookups")
    assert (on_delete["outcome"], on_delete["rule"]) == ("warn", "no-deletes")
    assert on_delete["details"]["would_be"] == "deny"
    assert (
        on_lookup["details"]["policy_version"] == on_delete["details"]["policy_version"] == version
    )


# -- changes reach the running agent ---------------------------------------------------------------


def test_a_policy_change_through_the_api_reaches_the_running_agent_and_a_rollback_undoes_it(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    first = org.policies.activate(NO_DELETES)
    agent = start_agent()
    assert agent.ask(policy=first)["policy"] == first
    assert agent.outcomes(3, call="lookup") == {"ok"}

    org.policies.activate(NO_DELETES, NO_LOOKUPS)
    changed = time.time()
    denied = agent.until("PolicyViolation", within=VISIBLE, call="lookup")
    ran = org.ran().count("lookup")
    assert denied["message"] == "Lookups are off for now."
    assert agent.outcomes(5, call="lookup") == {"PolicyViolation"}
    assert org.ran().count("lookup") == ran, "no body ran once the change arrived"

    org.policies.rollback(first)
    rolled_back = time.time()
    allowed = agent.until("ok", within=VISIBLE, call="lookup")
    assert agent.outcomes(3, call="lookup") == {"ok"}
    assert denied["at"] - changed < VISIBLE
    assert allowed["at"] - rolled_back < VISIBLE
    assert agent.process.poll() is None, "the same process all along"


# -- LLM calls -------------------------------------------------------------------------------------


def test_the_openai_client_asking_for_a_denied_model_sends_no_request(
    org: Org, start_agent: Callable[[], AgentProcess]
) -> None:
    no_gpt4 = {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"}
    version = org.policies.activate(no_gpt4)
    agent = start_agent()
    assert agent.ask(policy=version)["policy"] == version

    refused = agent.ask(chat="gpt-4")
    asked = time.monotonic()
    allowed = agent.ask(chat="gpt-4o-mini")

    assert (refused["outcome"], refused["rule"], refused["requests"]) == (
        "PolicyViolation",
        "no-gpt4",
        0,
    )
    assert (allowed["outcome"], allowed["requests"]) == ("ok", 1)
    decision = org.policies.decision_within(refused["run_id"], "chat gpt-4", asked)
    assert (decision["outcome"], decision["rule"]) == ("deny", "no-gpt4")
    assert decision["details"]["policy_version"] == version
