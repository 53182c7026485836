"""What the SDK's enforcer decided reaches the hub with the span (real SDK, real hub, both DBs)."""

from __future__ import annotations

from collections.abc import Callable

import agentops_sdk as agentops
from agentops_sdk.client import Client
from agentops_sdk.contract.decisions import DECISION_EVENT, Decision
from agentops_sdk.enforcement import CallInfo, Stage
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.ingest_events import rows


class NoDeletes(Stage):
    name = "policy"
    error = agentops.PolicyViolation

    def before(self, call: CallInfo) -> Decision | None:
        if call.name.startswith("delete_"):
            return Decision("deny", rule="no-deletes", details={"policy_version": 2})
        return None


@agentops.tool
def delete_user(user: str) -> None:
    raise AssertionError("never runs")


@agentops.agent
def janitor() -> str:
    try:
        delete_user("ada")
    except agentops.PolicyViolation as exc:
        return f"skipped: {exc.rule}"
    return "deleted"


def test_a_refused_call_is_stored_blocked_with_the_decision_that_refused_it(
    start_sdk: Callable[..., Client], hub_url: str, org: IssuedKey, migrated_url: str
) -> None:
    # Without the hub's controls and policies, so that this stage stands in for a policy stage.
    client = start_sdk(hub_url=hub_url, api_key=org.key, controls=False)
    client.enforcer.install(NoDeletes())

    assert janitor() == "skipped: no-deletes"
    assert client.flush(15).completed

    assert client.stats().dropped_total == 0
    spans = rows(migrated_url, "spans", org.org_id)
    (blocked,) = [span for span in spans if span["name"] == "delete_user"]
    assert blocked["status"] == "blocked"
    (event,) = blocked["events"]
    assert event["name"] == DECISION_EVENT
    assert event["attributes"] == {
        "outcome": "deny",
        "stage": "policy",
        "rule": "no-deletes",
        "reason": None,
        "details": {"policy_version": 2},
    }
