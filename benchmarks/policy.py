"""Cost of one policy evaluation: a 100-rule set, against a hand-written check and Cedar.

    pip install -e ".[bench]"
    python benchmarks/policy.py [--calls 20000] [--rounds 5]

One policy set of 100 rules (tool deny lists by name and glob, argument conditions with
regexes, bounds and lists, model rules, scoped rules, per-run and per-minute limits, max
tokens, warnings, approvals) decides a stream of calls drawn from 40 tools, 3 models and 3
agents. Every evaluation is timed on its own (``perf_counter_ns``); the figures are the median
(p50) and the 99th percentile over all rounds, interleaved so that the machine's noise falls
on every variant alike:

- the engine (``agentops_sdk.contract.policy_engine``), as the SDK runs it: compiled once,
  candidate rules cached per call shape;
- the engine with its cache emptied before every call: the first sight of each call shape;
- a hand-written Python check of the same 100 rules (sets, a prefix tuple, compiled regexes):
  what an engineer would write for this one policy, and the floor for pure Python;
- Cedar through ``cedarpy`` (if installed), the same rules as 100 Cedar policies (regexes
  become ``like`` patterns, counters and arguments travel in the context), the policy set and
  entities parsed once.

The engine and the hand-written check must agree on every call (checked before timing).
Compiling the set is timed too.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from collections.abc import Callable, Mapping
from time import perf_counter_ns
from typing import Any

from agentops_sdk.contract.policy import parse_policy
from agentops_sdk.contract.policy_engine import CallFacts, CompiledPolicy, compile_policy

TOOLS = [f"tool_{index}" for index in range(30)] + [
    "delete_user",
    "drop_table",
    "send_email",
    "search",
    "refund",
    "transfer",
    "read_file",
    "write_file",
    "shell",
    "browse",
]
MODELS = ["gpt-4", "gpt-4o", "gpt-4o-mini"]
AGENTS = ["support", "billing", "research"]


def policy_document() -> dict[str, Any]:
    """The 100 rules."""
    rules: list[dict[str, Any]] = []
    for index in range(0, 30, 2):  # 15: exact tool denials
        rules.append(
            {"id": f"deny-{index}", "match": {"kind": "tool", "name": f"tool_{index}"},
             "outcome": "deny"}
        )  # fmt: skip
    for prefix in ("delete_", "drop_", "rm_", "kill_", "purge_"):  # 5: globs
        rules.append(
            {"id": f"no-{prefix}", "match": {"kind": "tool", "name": f"{prefix}*"},
             "outcome": "deny"}
        )  # fmt: skip
    for index in range(1, 30, 2):  # 15: argument bounds on other tools
        rules.append(
            {"id": f"bound-{index}", "match": {"kind": "tool", "name": f"tool_{index}"},
             "when": {"argument": "amount", "gt": 100 + index}, "outcome": "require_approval"}
        )  # fmt: skip
    for domain in ("example.com", "example.org", "corp.example", "partner.example", "mail.test"):
        rules.append(  # 5: regexes
            {"id": f"mail-{domain}", "match": {"kind": "tool", "name": "send_email"},
             "when": {"argument": "to", "regex": f"@{re.escape(domain)}$"}, "outcome": "warn"}
        )  # fmt: skip
    rules.append(
        {"id": "external-mail", "match": {"kind": "tool", "name": "send_email"},
         "when": {"argument": "to", "not_regex": r"@example\.com$"}, "outcome": "require_approval"}
    )  # fmt: skip
    for index in range(10):  # 10: lists of values
        rules.append(
            {"id": f"region-{index}", "match": {"kind": "tool", "name": "transfer"},
             "when": {"argument": "region", "in": [f"r{index}", f"r{index + 10}"]},
             "outcome": "deny"}
        )  # fmt: skip
    rules.append(
        {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"}
    )  # fmt: skip
    rules.append(
        {"id": "cap", "match": {"kind": "llm"}, "limit": {"max_tokens": 4000}, "outcome": "deny"}
    )  # fmt: skip
    rules.append(
        {"id": "secrets", "match": {"kind": "llm"},
         "when": {"argument": "messages", "regex": "(?i)password"}, "outcome": "deny"}
    )  # fmt: skip
    for index in range(7):  # 7: models watched per agent
        rules.append(
            {"id": f"watch-{index}", "scope": {"agent": AGENTS[index % 3]},
             "match": {"kind": "llm", "model": f"o{index}*"}, "outcome": "warn"}
        )  # fmt: skip
    for index, environment in enumerate(("prod", "staging", "test", "dev", "prod")):  # 5: scopes
        rules.append(
            {"id": f"env-{index}", "scope": {"environment": environment, "tag": f"t{index}"},
             "match": {"kind": "tool", "name": "shell"}, "outcome": "deny"}
        )  # fmt: skip
    for tool in ("search", "browse", "read_file", "write_file", "refund"):  # 5: budgets per run
        rules.append(
            {"id": f"budget-{tool}", "match": {"kind": "tool", "name": tool},
             "limit": {"calls_per_run": 50}, "outcome": "deny"}
        )  # fmt: skip
    for tool in ("search", "browse", "refund"):  # 3: rates
        rules.append(
            {"id": f"rate-{tool}", "match": {"kind": "tool", "name": tool},
             "limit": {"calls_per_minute": 600}, "outcome": "deny"}
        )  # fmt: skip
    rules.append({"id": "runaway", "limit": {"llm_calls_per_run": 200}, "outcome": "deny"})
    rules.append({"id": "long-run", "limit": {"duration_per_run": 3600}, "outcome": "deny"})
    rules.append({"id": "tokens", "limit": {"tokens_per_run": 2_000_000}, "outcome": "deny"})
    for index in range(23):  # 23: warnings on step names
        rules.append(
            {"id": f"step-{index}", "match": {"kind": "step", "name": f"plan_{index}"},
             "outcome": "warn"}
        )  # fmt: skip
    assert len(rules) == 100, len(rules)
    return {"version": 1, "rules": rules}


def call_stream(count: int, seed: int = 7) -> list[CallFacts]:
    """Calls an agent might make: mostly tools, some LLM calls, with plausible arguments."""
    rng = random.Random(seed)
    calls = []
    for _ in range(count):
        agent = rng.choice(AGENTS)
        run = {"llm_calls": rng.randrange(60), "duration": rng.random() * 600.0, "tokens": 5000}
        counts = {"budget-search": rng.randrange(60), "budget-refund": rng.randrange(10)}
        rates = {"rate-search": rng.randrange(20)}
        if rng.random() < 0.25:
            calls.append(
                CallFacts(
                    kind="llm",
                    name="chat",
                    agent=agent,
                    model=rng.choice(MODELS),
                    max_tokens=rng.choice([256, 1024, 8000]),
                    arguments={"messages": [{"role": "user", "content": "Weather in Paris?"}]},
                    run=run,
                )
            )
            continue
        tool = rng.choice(TOOLS)
        arguments: dict[str, Any] = {
            "amount": rng.randrange(300),
            "region": f"r{rng.randrange(30)}",
        }
        if tool == "send_email":
            arguments["to"] = rng.choice(["ann@example.com", "bob@gmail.com", "eve@example.org"])
        calls.append(
            CallFacts(
                kind="tool",
                name=tool,
                agent=agent,
                environment=rng.choice(["prod", "dev"]),
                tags=(rng.choice(["t0", "t1", "x"]),),
                arguments=arguments,
                run=run,
                counts=counts,
                rates=rates,
            )
        )
    return calls


def hand_written(document: Mapping[str, Any]) -> Callable[[CallFacts], tuple[str, str] | None]:
    """The same 100 rules as plain Python: what one would write for this one policy."""
    denied = {f"tool_{index}" for index in range(0, 30, 2)}
    bounds = {f"tool_{index}": 100 + index for index in range(1, 30, 2)}
    prefixes = ("delete_", "drop_", "rm_", "kill_", "purge_")
    mail = [
        (f"mail-{domain}", re.compile(f"@{re.escape(domain)}$"))
        for domain in ("example.com", "example.org", "corp.example", "partner.example", "mail.test")
    ]
    internal = re.compile(r"@example\.com$")
    secret = re.compile("(?i)password")
    regions = {f"r{index}": f"region-{index}" for index in range(10)}
    regions.update({f"r{index + 10}": f"region-{index}" for index in range(10)})
    watched = [(f"watch-{index}", AGENTS[index % 3], f"o{index}") for index in range(7)]
    scoped = [
        (f"env-{index}", environment, f"t{index}")
        for index, environment in enumerate(("prod", "staging", "test", "dev", "prod"))
    ]
    budgets = {
        tool: f"budget-{tool}" for tool in ("search", "browse", "read_file", "write_file", "refund")
    }
    rates = {tool: f"rate-{tool}" for tool in ("search", "browse", "refund")}
    del document  # the rules are written out above

    def check(call: CallFacts) -> tuple[str, str] | None:
        # Denials first, in the document's order; then approvals; then warnings.
        name, arguments, run = call.name, call.arguments, call.run
        llm = call.kind == "llm"
        tool = call.kind == "tool"
        if tool and name in denied:
            return ("deny", f"deny-{name.split('_')[1]}")
        if tool:
            for prefix in prefixes:
                if name.startswith(prefix):
                    return ("deny", f"no-{prefix}")
        if tool and name == "transfer" and arguments.get("region") in regions:
            return ("deny", regions[arguments["region"]])
        if llm and call.model == "gpt-4":
            return ("deny", "no-gpt4")
        if llm and (call.max_tokens is None or call.max_tokens > 4000):
            return ("deny", "cap")
        if llm and any(secret.search(str(message)) for message in arguments.get("messages") or ()):
            return ("deny", "secrets")
        if tool and name == "shell":
            for rule, environment, tag in scoped:
                if call.environment == environment and tag in call.tags:
                    return ("deny", rule)
        if tool and name in budgets and call.counts.get(budgets[name], 0) + 1 > 50:
            return ("deny", budgets[name])
        if tool and name in rates and call.rates.get(rates[name], 0) + 1 > 600:
            return ("deny", rates[name])
        if (run.get("llm_calls") or 0) + llm > 200:
            return ("deny", "runaway")
        if (run.get("duration") or 0) > 3600:
            return ("deny", "long-run")
        if (run.get("tokens") or 0) >= 2_000_000:
            return ("deny", "tokens")
        if tool and name in bounds and arguments.get("amount", 0) > bounds[name]:
            return ("require_approval", f"bound-{name.split('_')[1]}")
        if tool and name == "send_email" and not internal.search(arguments.get("to", "")):
            return ("require_approval", "external-mail")
        if tool and name == "send_email":
            for rule, pattern in mail:
                if pattern.search(arguments.get("to", "")):
                    return ("warn", rule)
        if llm and call.model is not None:
            for rule, agent, prefix in watched:
                if call.agent == agent and call.model.startswith(prefix):
                    return ("warn", rule)
        if call.kind == "step" and name.startswith("plan_"):
            return ("warn", f"step-{name.removeprefix('plan_')}")
        return None

    return check


def cedar_variant(document: Mapping[str, Any]) -> Callable[[CallFacts], Any] | None:
    """The same rules as Cedar policies, through cedarpy; None if it is not installed."""
    try:
        import cedarpy
    except ImportError:
        return None
    policies = []
    for rule in document["rules"]:
        conditions = []
        match = rule.get("match", {})
        if "kind" in match:
            conditions.append(f'context.kind == "{match["kind"]}"')
        name = match.get("name")
        if name is not None:
            conditions.append(f'context.name like "{name}"')
        if "model" in match:
            conditions.append(f'context.model like "{match["model"]}"')
        for field, values in rule.get("scope", {}).items():
            conditions.append(f'context.{field} like "{values}"')
        when = rule.get("when")
        if when is not None:
            argument = f"context.arguments.{when['argument']}"
            if "gt" in when:
                conditions.append(f"{argument} > {when['gt']}")
            if "in" in when:
                conditions.append(
                    f"[{', '.join(f'{v!r}' for v in when['in'])}].contains({argument})"
                )
            if "regex" in when or "not_regex" in when:
                like = "*" + (when.get("regex") or when["not_regex"]).strip("@$").replace("\\", "")
                negate = "!" if "not_regex" in when else ""
                conditions.append(f'{negate}({argument} like "{like}")'.replace("'", '"'))
        for field, maximum in rule.get("limit", {}).items():
            conditions.append(f"context.limits.{field} > {int(maximum)}")
        effect = "forbid" if rule["outcome"] == "deny" else "permit"
        body = " && ".join(conditions).replace("'", '"') or "true"
        policies.append(
            f'@id("{rule["id"]}")\n{effect}(principal, action, resource) when {{ {body} }};'
        )
    policies.append("permit(principal, action, resource);")
    policy_set = cedarpy.PolicySet.from_str("\n".join(policies))
    entities = cedarpy.Entities.from_json_str("[]")

    def authorize(call: CallFacts) -> Any:
        arguments = {
            key: value for key, value in call.arguments.items() if isinstance(value, int | str)
        }
        limits = {
            "calls_per_run": call.counts.get("budget-search", 0) + 1,
            "calls_per_minute": call.rates.get("rate-search", 0) + 1,
            "llm_calls_per_run": int(call.run.get("llm_calls") or 0) + 1,
            "duration_per_run": int(call.run.get("duration") or 0),
            "tokens_per_run": int(call.run.get("tokens") or 0),
            "max_tokens": call.max_tokens or 0,
        }
        context = {
            "kind": call.kind,
            "name": call.name,
            "model": call.model or "",
            "agent": call.agent,
            "environment": call.environment,
            "tag": call.tags[0] if call.tags else "",
            "arguments": {"amount": 0, "region": "", "to": "", "messages": "", **arguments},
            "limits": limits,
        }
        request = {
            "principal": f'Agent::"{call.agent}"',
            "action": 'Action::"call"',
            "resource": f'Tool::"{call.name}"',
            "context": context,
        }
        return cedarpy.is_authorized(request, policy_set, entities)

    return authorize


def percentiles(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=20_000, help="evaluations per variant per round"
    )
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()

    document = policy_document()
    started = time.perf_counter()
    policy = compile_policy(parse_policy(document))
    compiled_ms = (time.perf_counter() - started) * 1000
    calls = call_stream(arguments.calls)
    check = hand_written(document)
    disagreements = [call for call in calls if _decided(policy, call) != check(call)]
    assert not disagreements, f"the engine and the hand-written check differ on {disagreements[0]}"

    def cold(call: CallFacts) -> Any:
        policy._cache.clear()
        return policy.evaluate(call)

    variants: dict[str, Callable[[CallFacts], Any]] = {
        "engine (as the SDK runs it)": policy.evaluate,
        "engine, first sight of each call": cold,
        "hand-written Python check": check,
    }
    cedar = cedar_variant(document)
    if cedar is not None:
        variants["Cedar (cedarpy)"] = cedar
    samples: dict[str, list[int]] = {name: [] for name in variants}
    for _ in range(arguments.rounds):
        for name, evaluate in variants.items():
            timings = samples[name]
            for call in calls:
                start = perf_counter_ns()
                evaluate(call)
                timings.append(perf_counter_ns() - start)

    print(f"100 rules, parsed and compiled in {compiled_ms:.1f} ms")
    print(f"{len(calls)} calls x {arguments.rounds} rounds; per evaluation:")
    print(f"{'variant':<36}{'p50 us':>10}{'p99 us':>10}")
    for name, timings in samples.items():
        p50, p99 = percentiles(timings)
        print(f"{name:<36}{p50:>10.2f}{p99:>10.2f}")
    if cedar is None:
        print("Cedar (cedarpy): not installed")


def _decided(policy: CompiledPolicy, call: CallFacts) -> tuple[str, str] | None:
    decision = policy.evaluate(call).decision
    return None if decision is None else (decision.outcome, decision.rule or "")


if __name__ == "__main__":
    main()
