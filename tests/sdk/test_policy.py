"""Policies enforced in the agent's process: the local policy file, the policy stage, and what
it records. The issue's example policy, end to end through decorated tools."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import pytest

import agentops_sdk as agentops
from agentops_sdk import client as _client
from agentops_sdk.contract.controls import AgentProfile, ControlSet
from agentops_sdk.contract.decisions import DECISION_EVENT, Decision, StageName
from agentops_sdk.contract.policy import parse_policy
from agentops_sdk.contract.policy_engine import compile_policy
from agentops_sdk.enforcement import CallInfo, LocalHub, Stage, Wait
from agentops_sdk.schema import SpanEvent
from agentops_sdk.testing import CapturedEvents, capture_events

DEADLINE = 5.0

EXAMPLE = {
    "version": 1,
    "rules": [
        {
            "id": "no-deletes",
            "match": {"kind": "tool", "name": "delete_*"},
            "outcome": "deny",
            "message": "Deleting is not allowed for agents.",
        },
        {
            "id": "external-mail",
            "match": {"kind": "tool", "name": "send_email"},
            "when": {"argument": "to", "not_regex": r"@example\.com$"},
            "outcome": "require_approval",
        },
        {
            "id": "search-budget",
            "match": {"kind": "tool", "name": "search"},
            "limit": {"calls_per_run": 3},
            "outcome": "deny",
        },
        {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"},
    ],
}

ran: list[str] = []


@agentops.tool
def delete_user(user_id: str) -> str:
    ran.append(f"delete_user {user_id}")
    return "deleted"


@agentops.tool
def search(query: str) -> list[str]:
    ran.append(f"search {query}")
    return [query]


@agentops.tool
def send_email(to: str, body: str) -> str:
    ran.append(f"send_email {to}")
    return "sent"


@pytest.fixture(autouse=True)
def nothing_ran_yet() -> None:
    ran.clear()


def write_policy(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / "policy.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def example(tmp_path: Path) -> Iterator[CapturedEvents]:
    """Events captured under the issue's example policy, loaded from a file."""
    with capture_events(policy_file=write_policy(tmp_path, EXAMPLE)) as captured:
        yield captured


def decisions(span: SpanEvent) -> list[dict[str, Any]]:
    return [event.attributes for event in span.events if event.name == DECISION_EVENT]


# -- the example policy, end to end -----------------------------------------------------------


def test_a_delete_tool_never_runs_and_its_span_names_the_rule(example: CapturedEvents) -> None:
    with pytest.raises(agentops.PolicyViolation, match="Deleting is not allowed") as raised:
        delete_user("u1")

    assert ran == []
    assert raised.value.rule == "no-deletes"
    span = example.span("delete_user")
    assert span.status == "blocked"
    [decision] = decisions(span)
    assert decision["outcome"] == "deny"
    assert decision["stage"] == "policy"
    assert decision["rule"] == "no-deletes"
    assert decision["details"]["policy_version"] == 1
    assert decision["details"]["latency_us"] > 0


def test_the_fourth_search_in_a_run_is_denied_and_the_next_run_starts_over(
    example: CapturedEvents,
) -> None:
    @agentops.agent
    def researcher(searches: int) -> list[str]:
        found = []
        for index in range(searches):
            try:
                found += search(f"q{index}")
            except agentops.PolicyViolation as exc:
                found.append(f"refused by {exc.rule}")
        return found

    assert researcher(5) == [
        "q0",
        "q1",
        "q2",
        "refused by search-budget",
        "refused by search-budget",
    ]
    assert researcher(3) == ["q0", "q1", "q2"]
    assert ran == ["search q0", "search q1", "search q2"] * 2
    blocked = [span for span in example.spans if span.status == "blocked"]
    assert [decisions(span)[0]["details"]["limit"] for span in blocked] == ["calls_per_run"] * 2


def test_mail_outside_example_com_needs_an_approval_that_no_stage_gives(
    example: CapturedEvents,
) -> None:
    assert send_email("ann@example.com", "hello") == "sent"

    with pytest.raises(agentops.ApprovalDenied, match="approvals need a hub") as raised:
        send_email("bob@gmail.com", "hello")

    assert ran == ["send_email ann@example.com"]
    assert raised.value.rule == "external-mail"
    refused = [span for span in example.spans if span.status == "blocked"]
    asked, refusal = decisions(refused[0])
    assert asked["outcome"] == "require_approval"
    assert asked["rule"] == "external-mail"
    assert asked["details"]["approval"]["expires_in"] == 3600.0
    assert asked["details"]["approval"]["on_expiry"] == "deny"
    assert len(asked["details"]["approval"]["arguments_sha256"]) == 64
    assert (refusal["outcome"], refusal["stage"]) == ("deny", "approval")


class ApproveEverything(Stage):
    """An approval stage of one's own: approves what the policy asks about, noting it."""

    name: ClassVar[StageName] = "approval"

    def __init__(self) -> None:
        self.asked: list[Decision] = []

    def before(self, call: CallInfo) -> Wait | None:
        if call.approval is None:
            return None
        self.asked.append(call.approval)
        answer: Future[Decision] = Future()
        answer.set_result(Decision("allow", rule=call.approval.rule, reason="looks fine"))
        return Wait(answer)


def test_an_approval_stage_of_ones_own_settles_what_the_policy_asks(
    example: CapturedEvents,
) -> None:
    approvals = ApproveEverything()
    example.client.enforcer.install(approvals)

    assert send_email("bob@gmail.com", "hello") == "sent"

    [asked] = approvals.asked
    assert asked.rule == "external-mail"
    assert asked.details["approval"]["arguments_sha256"] is not None
    assert ran == ["send_email bob@gmail.com"]


def test_an_async_tool_is_denied_before_it_runs(example: CapturedEvents) -> None:
    @agentops.tool
    async def delete_everything() -> str:
        ran.append("delete_everything")
        return "gone"

    with pytest.raises(agentops.PolicyViolation):
        asyncio.run(delete_everything())

    assert ran == []


# -- shadow mode --------------------------------------------------------------------------------


def test_warn_blocks_nothing_and_records_the_decision(tmp_path: Path) -> None:
    document = {
        "version": "candidate-7",
        "rules": [
            {"id": "watch-search", "match": {"name": "search"}, "outcome": "warn"},
            {"id": "no-deletes", "match": {"name": "delete_*"}, "outcome": "deny", "shadow": True},
        ],
    }
    with capture_events(policy_file=write_policy(tmp_path, document)) as captured:
        assert search("cats") == ["cats"]
        assert delete_user("u1") == "deleted"

    assert ran == ["search cats", "delete_user u1"]
    [watched] = decisions(captured.span("search"))
    assert (watched["outcome"], watched["rule"]) == ("warn", "watch-search")
    assert watched["details"]["policy_version"] == "candidate-7"
    [shadowed] = decisions(captured.span("delete_user"))
    assert (shadowed["outcome"], shadowed["rule"]) == ("warn", "no-deletes")
    assert shadowed["details"]["would_be"] == "deny"
    assert all(span.status == "ok" for span in captured.spans)


def test_a_whole_set_in_shadow_mode_blocks_nothing(tmp_path: Path) -> None:
    with capture_events(policy_file=write_policy(tmp_path, {**EXAMPLE, "shadow": True})):
        for index in range(5):
            search(f"q{index}")
        delete_user("u1")

    assert len(ran) == 6


# -- the local file ---------------------------------------------------------------------------


def test_init_reads_the_policy_file_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTOPS_POLICY_FILE", str(write_policy(tmp_path, EXAMPLE)))
    client = agentops.init(exporter="memory", spool=False, integrations=[])
    try:
        with pytest.raises(agentops.PolicyViolation):
            delete_user("u1")
    finally:
        agentops.shutdown(1)
    assert client is not None
    assert ran == []


def test_an_invalid_policy_file_stops_init_naming_rule_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {
        "version": 1,
        "rules": [{"id": "mail", "outcome": "deny", "when": {"argument": "to"}}],
    }
    previous = _client.current

    with pytest.raises(agentops.PolicyError) as raised:
        agentops.init(exporter="memory", spool=False, policy_file=write_policy(tmp_path, document))

    assert isinstance(raised.value, agentops.ConfigurationError)
    [problem] = raised.value.problems
    assert (problem.rule, problem.field) == ("mail", "/rules/0/when")
    assert "rule 'mail', /rules/0/when: give at least one test" in str(raised.value)
    assert _client.current is None or _client.current is previous


def test_a_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with (
        pytest.raises(agentops.PolicyError, match="cannot read the policy file"),
        capture_events(policy_file=tmp_path / "nowhere.json"),
    ):
        pass


def test_a_yaml_policy_without_pyyaml_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nrules: []\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if it were not installed

    with (
        pytest.raises(
            agentops.PolicyError, match=r"needs PyYAML: pip install 'agentops-hub\[policy"
        ),
        capture_events(policy_file=path),
    ):
        pass


EXAMPLE_YAML = Path(__file__).with_name("example_policy.yaml")
"""The issue's example policy, as written there."""


@pytest.mark.extras
def test_the_issues_example_in_yaml_means_what_it_says() -> None:
    @agentops.agent
    def assistant() -> list[str]:
        outcomes = []
        for call in (
            lambda: delete_user("u1"),
            lambda: send_email("ann@example.com", "hi"),
            lambda: send_email("bob@gmail.com", "hi"),
            *[lambda: search("q")] * 4,
        ):
            try:
                call()
                outcomes.append("ran")
            except agentops.EnforcementError as exc:
                outcomes.append(f"{type(exc).__name__} {exc.rule}")
        return outcomes

    with capture_events(policy_file=EXAMPLE_YAML):
        outcomes = assistant()

    assert outcomes == [
        "PolicyViolation no-deletes",
        "ran",
        "ApprovalDenied external-mail",
        "ran",
        "ran",
        "ran",
        "PolicyViolation search-budget",
    ]


# -- counters ---------------------------------------------------------------------------------


def test_threads_of_one_run_never_take_more_calls_than_the_limit(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "rules": [
            {"id": "ten", "match": {"name": "search"}, "limit": {"calls_per_run": 10},
             "outcome": "deny"}
        ],
    }  # fmt: skip
    allowed = 0
    lock = threading.Lock()

    def hammer() -> None:
        nonlocal allowed
        for _ in range(25):
            try:
                search("q")
            except agentops.PolicyViolation:
                continue
            with lock:
                allowed += 1

    with (
        capture_events(policy_file=write_policy(tmp_path, document)),
        agentops.run("crowd"),
        ThreadPoolExecutor(8) as pool,
    ):
        for future in [pool.submit(agentops.bind_context(hammer)) for _ in range(8)]:
            future.result(DEADLINE)

    assert allowed == 10
    assert len(ran) == 10


def test_a_per_minute_rate_is_per_agent(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "rules": [
            {"id": "slow-search", "match": {"name": "search"}, "limit": {"calls_per_minute": 2},
             "outcome": "deny"}
        ],
    }  # fmt: skip

    @agentops.agent
    def alice() -> str:
        search("a")
        return "ok"

    @agentops.agent
    def bob() -> str:
        search("b")
        return "ok"

    with capture_events(policy_file=write_policy(tmp_path, document)):
        assert [alice(), alice()] == ["ok", "ok"]
        with pytest.raises(agentops.PolicyViolation, match="calls_per_minute 3, at most 2"):
            alice()  # a new run, the same agent: the rate spans runs
        assert bob() == "ok"

    assert ran == ["search a", "search a", "search b"]


def test_llm_calls_per_run_and_max_tokens_stop_a_runaway_loop(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "rules": [
            {"id": "loop", "limit": {"llm_calls_per_run": 3}, "outcome": "deny"},
            {
                "id": "cap",
                "match": {"kind": "llm"},
                "limit": {"max_tokens": 500},
                "outcome": "deny",
            },
        ],
    }

    @agentops.llm(model="gpt-4o-mini")
    def ask(prompt: str, max_tokens: int | None) -> str:
        ran.append(f"ask {prompt}")
        return "answer"

    @agentops.agent
    def looping() -> list[str]:
        outcomes = []
        for index in range(5):
            try:
                outcomes.append(ask(f"p{index}", max_tokens=100))
            except agentops.PolicyViolation as exc:
                outcomes.append(f"{exc.rule}")
        return outcomes

    with capture_events(policy_file=write_policy(tmp_path, document)):
        assert looping() == ["answer", "answer", "answer", "loop", "loop"]
        with pytest.raises(agentops.PolicyViolation, match="max_tokens 4000, at most 500"):
            ask("long", max_tokens=4000)
        with pytest.raises(agentops.PolicyViolation, match="max_tokens not set"):
            ask("unbounded", max_tokens=None)

    assert ran == ["ask p0", "ask p1", "ask p2"]


def test_a_parameter_the_caller_leaves_out_counts_with_its_default(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "rules": [
            {"id": "big-refund", "when": {"argument": "amount", "gt": 100}, "outcome": "deny"}
        ],
    }

    @agentops.tool
    def refund(order: str, amount: float = 500.0, *, currency: str = "EUR") -> str:
        ran.append(f"refund {order} {amount} {currency}")
        return "refunded"

    with capture_events(policy_file=write_policy(tmp_path, document)):
        with pytest.raises(agentops.PolicyViolation):
            refund("o1")
        assert refund("o2", 10.0) == "refunded"
        assert refund("o3", amount=20.0, currency="USD") == "refunded"

    assert ran == ["refund o2 10.0 EUR", "refund o3 20.0 USD"]


def test_a_steps_limit_counts_the_runs_steps(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "rules": [{"id": "steps", "limit": {"steps_per_run": 2}, "outcome": "deny"}],
    }

    @agentops.step
    def think() -> str:
        return "thought"

    with capture_events(policy_file=write_policy(tmp_path, document)), agentops.run("r"):
        assert [think(), think()] == ["thought", "thought"]
        with pytest.raises(agentops.PolicyViolation, match="steps_per_run 3, at most 2"):
            think()


def test_cost_limits_are_noted_once_when_calls_cannot_be_priced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # as without the pricing extra
    document = {
        "version": 1,
        "rules": [{"id": "spend", "limit": {"cost_per_run": 1}, "outcome": "deny"}],
    }

    with (
        caplog.at_level(logging.WARNING, "agentops_sdk"),
        capture_events(policy_file=write_policy(tmp_path, document)),
    ):
        search("a")
        search("b")

    notes = [record for record in caplog.records if "cannot be priced" in record.message]
    assert len(notes) == 1
    assert "spend" in notes[0].message
    assert "agentops-hub[pricing]" in notes[0].message
    assert ran == ["search a", "search b"]


# -- the hub's policy and registry ------------------------------------------------------------


def control_set(*profiles: AgentProfile) -> ControlSet:
    return ControlSet(org_id=uuid4(), version=1, agents=profiles, generated_at=datetime.now(UTC))


def test_a_policy_from_the_hub_replaces_the_local_file(tmp_path: Path) -> None:
    hub = LocalHub()
    stricter = compile_policy(
        parse_policy({"version": 9, "rules": [{"id": "no-search", "match": {"name": "search"},
                                               "outcome": "deny"}]})
    )  # fmt: skip
    with capture_events(
        policy_file=write_policy(tmp_path, EXAMPLE), hub_url="http://hub.invalid", hub_source=hub
    ) as captured:
        assert search("before") == ["before"]
        link = captured.client.enforcer.link
        hub.publish("policies", stricter)
        assert link.wait_until(lambda: link.snapshot.get("policies") is stricter, DEADLINE)

        with pytest.raises(agentops.PolicyViolation) as raised:
            search("after")

    assert raised.value.rule == "no-search"
    assert raised.value.decision is not None
    assert raised.value.decision.details["policy_version"] == 9


def test_a_team_scope_uses_the_team_the_hub_registry_gives_the_agent(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "rules": [{"id": "core-only", "scope": {"team": "payments"}, "match": {"name": "search"},
                   "outcome": "deny"}],
    }  # fmt: skip
    hub = LocalHub()

    @agentops.agent
    def cashier() -> list[str]:
        return search("refunds")

    with capture_events(
        policy_file=write_policy(tmp_path, document),
        hub_url="http://hub.invalid",
        hub_source=hub,
    ) as captured:
        assert cashier() == ["refunds"]  # the hub has said nothing of the agent yet
        link = captured.client.enforcer.link
        link.require(frozenset({"controls"}))
        hub.publish("controls", control_set(AgentProfile(name="cashier", team="payments")))
        assert link.wait_until(lambda: link.snapshot.get("controls") is not None, DEADLINE)

        with pytest.raises(agentops.PolicyViolation):
            cashier()


def test_a_tag_scope_sees_the_calls_tags_and_the_registrys(tmp_path: Path) -> None:
    document = {"version": 1, "rules": [{"id": "eu", "scope": {"tag": "eu"}, "outcome": "deny"}]}

    @agentops.tool(tags=["eu"])
    def lookup() -> str:
        return "found"

    with capture_events(policy_file=write_policy(tmp_path, document)):
        with pytest.raises(agentops.PolicyViolation):
            lookup()
        assert search("untagged") == ["untagged"]


# -- fork -------------------------------------------------------------------------------------

FORK = """
    import json, os, signal, sys
    import agentops_sdk as agentops
    from agentops_sdk.testing import capture_events

    agentops.init(exporter="memory", spool=False)  # installs the fork hook

    @agentops.tool
    def search(query):
        return query

    with capture_events(policy_file=sys.argv[1]) as events, agentops.run("r"):
        search("a")
        [stage] = [s for s in events.client.enforcer.stages if s.name == "policy"]
        tally = agentops.current_span().run.state["policy"]
        # As another thread of the parent might hold them at the very moment of the fork:
        tally.lock.acquire()
        stage._lock.acquire()
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a child stuck on an inherited lock must not outlive the test
            outcomes = []
            for query in "bcd":
                try:
                    search(query)
                    outcomes.append("ran")
                except agentops.PolicyViolation:
                    outcomes.append("denied")
            print(json.dumps({"child": outcomes}), flush=True)
            os._exit(0)
        tally.lock.release()
        stage._lock.release()
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status}), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_counts_on_with_fresh_locks(tmp_path: Path) -> None:
    document = {
        "version": 1,
        "rules": [
            {"id": "budget", "match": {"name": "search"},
             "limit": {"calls_per_run": 3, "calls_per_minute": 100}, "outcome": "deny"}
        ],
    }  # fmt: skip
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(FORK))
    done = subprocess.run(
        [sys.executable, str(script), str(write_policy(tmp_path, document))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    said: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        said |= json.loads(line)
    # The child inherited the run's one search: two more run, the fourth is refused.
    assert said == {"child": ["ran", "ran", "denied"], "status": 0}
