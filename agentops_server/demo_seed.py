"""``agentops-hub demo --seed``: a realistic org to look at, made through the hub's own API.

Everything goes through the API with the org's key, as agents and an operator would make it,
so every page and every derived figure (costs, budgets' spend, rollups) comes from the real
paths:

- six agents in the registry, in three environments, with tags;
- a month of their runs (``days`` x ``runs_per_day``, spread over each day): each an ``agent``
  span around LLM calls (four models, with token usage the hub prices) and tool calls; about
  one run in twenty fails, and about one in thirty has a tool call a policy refused (a
  ``blocked`` span with the decision on it);
- the issue's example policy set, activated (no deletes, external mail needs approval, three
  searches per run, no ``gpt-4``);
- budgets: the org's monthly spend, a daily budget on one agent (hard, auto-pause), a soft
  weekly one on a tag;
- one approval request waiting for a reviewer (an external email), and one agent paused for
  review.

The data is made from a seeded random generator: the same seed gives the same org (ids aside).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from agentops_sdk.contract.approvals import approval_key
from agentops_sdk.contract.decisions import DECISION_EVENT, Decision

__all__ = ["SeedReport", "seed_org"]

AGENTS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("support-triage", "Sorts support tickets and drafts first answers.", ("support",), "prod"),
    (
        "refund-assistant",
        "Checks refund requests against the policy.",
        ("support", "money"),
        "prod",
    ),
    ("research-analyst", "Searches and summarises sources for analysts.", ("research",), "prod"),
    ("sales-outreach", "Writes outreach emails for the sales team.", ("sales",), "staging"),
    ("data-cleaner", "Fixes and deduplicates CRM records.", ("ops",), "prod"),
    ("release-notes", "Drafts release notes from merged changes.", ("engineering",), "dev"),
)
MODELS: tuple[tuple[str, str, int], ...] = (
    ("gpt-4o-mini", "openai", 5),
    ("gpt-4o", "openai", 2),
    ("claude-3-5-sonnet-20241022", "anthropic", 2),
    ("o3-mini", "openai", 1),
)
"""Models the agents call (name, provider, weight)."""
TOOLS: tuple[str, ...] = ("search", "fetch_ticket", "lookup_customer", "send_email", "update_crm")
POLICY: dict[str, Any] = {
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
    ]
}
_BATCH = 400


@dataclasses.dataclass(frozen=True, slots=True)
class SeedReport:
    """What the seed made."""

    agents: int
    runs: int
    spans: int
    budgets: int
    policy_version: int
    approval_id: str
    paused_agent: str


def seed_org(
    client: httpx.Client,
    *,
    days: int = 30,
    runs_per_day: int = 24,
    seed: int = 7,
    now: dt.datetime | None = None,
) -> SeedReport:
    """Fill the org of ``client``'s key (a client of the hub with ``Authorization`` set): see
    the module's docstring. Raises ``httpx.HTTPStatusError`` when the hub refuses a step."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    for name, description, tags, environment in AGENTS:
        made = client.post(
            "/api/v1/agents",
            json={
                "name": name,
                "description": description,
                "tags": list(tags),
                "environments": [environment, "dev"] if environment != "dev" else ["dev"],
            },
        )
        if made.status_code != 409:  # made by an earlier seed: kept as it is
            made.raise_for_status()
    version = client.post("/api/v1/policies/versions", json={"document": POLICY, "activate": True})
    version.raise_for_status()
    policy_version = int(version.json()["number"])
    runs = spans = 0
    events: list[dict[str, Any]] = []
    for run_events in _runs(rng, now, days, runs_per_day, policy_version):
        runs += 1
        spans += len(run_events) - 1
        events.extend(run_events)
        if len(events) >= _BATCH:
            _ingest(client, events)
            events = []
    if events:
        _ingest(client, events)
    budgets = [
        {"name": "org monthly", "scope": {"kind": "org"}, "limit_usd": "250", "period": "monthly"},
        {
            "name": "refunds daily",
            "scope": {"kind": "agent", "value": "refund-assistant"},
            "limit_usd": "5",
            "period": "daily",
            "auto_pause": True,
            "auto_resume": True,
        },
        {
            "name": "sales weekly (soft)",
            "scope": {"kind": "tag", "value": "sales"},
            "limit_usd": "20",
            "period": "weekly",
            "hard": False,
        },
    ]
    for budget in budgets:
        made = client.post("/api/v1/budgets", json=budget)
        if made.status_code != 409:  # made by an earlier seed: kept as it is
            made.raise_for_status()
    approval_id = _pending_approval(client, policy_version)
    paused = "data-cleaner"
    client.post(
        "/api/v1/controls",
        json={
            "scope": {"kind": "agent", "value": paused},
            "state": "paused",
            "reason": "demo: paused for review after duplicate merges",
        },
    ).raise_for_status()
    return SeedReport(
        agents=len(AGENTS),
        runs=runs,
        spans=spans,
        budgets=len(budgets),
        policy_version=policy_version,
        approval_id=approval_id,
        paused_agent=paused,
    )


def _runs(
    rng: random.Random, now: dt.datetime, days: int, runs_per_day: int, policy_version: int
) -> Iterator[list[dict[str, Any]]]:
    """Each run's events (the run last), oldest day first."""
    start_of_today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(days - 1, -1, -1):
        midnight = start_of_today - dt.timedelta(days=day)
        for _ in range(runs_per_day):
            started = midnight + dt.timedelta(seconds=rng.uniform(0, 86_400))
            if started >= now - dt.timedelta(minutes=1):
                continue  # today's runs so far only
            yield _run(rng, started, policy_version)


def _run(rng: random.Random, started: dt.datetime, policy_version: int) -> list[dict[str, Any]]:
    name, _, tags, environment = rng.choice(AGENTS)
    run_id = str(uuid.uuid4())
    root_id = str(uuid.uuid4())
    fails = rng.random() < 0.05
    blocked_at = rng.randrange(1, 4) if rng.random() < 0.035 else None
    at = started + dt.timedelta(milliseconds=rng.uniform(5, 40))
    spans: list[dict[str, Any]] = []
    input_tokens = output_tokens = 0
    for step in range(rng.randint(2, 5)):
        if step % 2 == 0:
            model, provider = _model(rng)
            took = dt.timedelta(milliseconds=rng.lognormvariate(6.6, 0.5))
            used_in, used_out = rng.randint(300, 4000), rng.randint(40, 900)
            input_tokens, output_tokens = input_tokens + used_in, output_tokens + used_out
            spans.append(
                _span(run_id, root_id, "llm", f"chat {model}", started=at, took=took)
                | {
                    "llm": {
                        "model": model,
                        "provider": provider,
                        "input_tokens": used_in,
                        "output_tokens": used_out,
                    },
                    "input": {"messages": [{"role": "user", "content": f"{name} step {step}"}]},
                    "output": "(model answer)",
                }
            )
        else:
            tool = rng.choice(TOOLS)
            took = dt.timedelta(milliseconds=rng.lognormvariate(4.5, 0.8))
            span = _span(run_id, root_id, "tool", tool, started=at, took=took) | {
                "input": {"query": f"{tool} for {name}"},
                "output": "ok",
            }
            if step == blocked_at:
                span = _blocked(span, tool, policy_version)
            spans.append(span)
        at += took + dt.timedelta(milliseconds=rng.uniform(2, 30))
    if fails:
        spans[-1] |= {
            "status": "error",
            "output": None,
            "error": {"type": "TimeoutError", "message": "the upstream API timed out"},
        }
    ended = at + dt.timedelta(milliseconds=rng.uniform(2, 20))
    status = "error" if fails else "ok"
    root = _span(run_id, None, "agent", name, started=started, took=ended - started) | {
        "id": root_id,
        "status": status,
        "input": {"ticket": rng.randint(1000, 9999)},
        "output": None if fails else "done",
        "error": spans[-1]["error"] if fails else None,
    }
    run = {
        "type": "run",
        "schema_version": 1,
        "id": run_id,
        "agent": name,
        "name": name,
        "environment": environment,
        "status": status,
        "started_at": started.isoformat(),
        "ended_at": ended.isoformat(),
        "tags": list(tags),
        "metadata": {"seeded": True},
        "input": root["input"],
        "output": root["output"],
        "error": root["error"],
        "span_count": len(spans) + 1,
        "error_count": int(fails),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }
    return [root, *spans, run]


def _model(rng: random.Random) -> tuple[str, str]:
    names = [(model, provider) for model, provider, _ in MODELS]
    weights = [weight for _, _, weight in MODELS]
    return rng.choices(names, weights)[0]


def _span(
    run_id: str,
    parent_id: str | None,
    kind: str,
    name: str,
    *,
    started: dt.datetime,
    took: dt.timedelta,
) -> dict[str, Any]:
    return {
        "type": "span",
        "schema_version": 1,
        "id": str(uuid.uuid4()),
        "run_id": run_id,
        "parent_id": parent_id,
        "kind": kind,
        "name": name,
        "status": "ok",
        "started_at": started.isoformat(),
        "ended_at": (started + took).isoformat(),
        "tags": [],
        "attributes": {},
        "input": None,
        "output": None,
        "error": None,
        "events": [],
    }


def _blocked(span: dict[str, Any], tool: str, policy_version: int) -> dict[str, Any]:
    """``span`` refused by the policy before it ran (what the SDK records)."""
    rule, reason = (
        ("search-budget", "search was called more than 3 times in this run")
        if tool == "search"
        else ("no-deletes", "Deleting is not allowed for agents.")
    )
    decision = Decision(
        "deny", stage="policy", rule=rule, reason=reason, details={"policy_version": policy_version}
    )
    return span | {
        "status": "blocked",
        "output": None,
        "error": {"type": "PolicyViolation", "message": reason},
        "ended_at": span["started_at"],
        "events": [
            {"name": DECISION_EVENT, "at": span["started_at"], "attributes": decision.to_wire()}
        ],
    }


def _ingest(client: httpx.Client, events: list[dict[str, Any]]) -> None:
    batch = {
        "schema_version": 1,
        "batch_id": str(uuid.uuid4()),
        "sdk": {"name": "agentops-demo-seed", "version": "1"},
        "events": events,
    }
    answer = client.post("/api/v1/ingest/batch", json=batch)
    answer.raise_for_status()
    rejected = answer.json().get("rejected", 0)
    if rejected:
        raise httpx.HTTPStatusError(
            f"the hub rejected {rejected} seeded events: {answer.json().get('errors')}",
            request=answer.request,
            response=answer,
        )


def _pending_approval(client: httpx.Client, policy_version: int) -> str:
    """An external email from the sales agent, waiting for a reviewer; its id."""
    run_id = str(uuid.uuid4())
    arguments = {"to": "buyer@customer.example.org", "subject": "Following up", "body": "Hi..."}
    frozen = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(frozen.encode()).hexdigest()
    ask = {
        "key": approval_key(run_id, "send_email", digest),
        "agent": "sales-outreach",
        "environment": "staging",
        "run_id": run_id,
        "span_id": str(uuid.uuid4()),
        "kind": "tool",
        "name": "send_email",
        "arguments": arguments,
        "arguments_sha256": digest,
        "arguments_valid": True,
        "rule": "external-mail",
        "policy_version": str(policy_version),
        "reason": "send_email to an address outside example.com needs approval",
        "expires_in": 7 * 86_400.0,
    }
    made = client.post("/api/v1/approvals", json=ask)
    made.raise_for_status()
    approval_id: str = made.json()["id"]
    return approval_id
