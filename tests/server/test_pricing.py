"""Costs on the hub: spans priced at ingest and runs totalled (SQLite and PostgreSQL), golden
costs computed here by hand from per-million prices, unpriced models shown as such, the SDK's
cost compared, the org's own prices (CRUD, audit, roles, unit sanity) and recomputes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

from agentops_server import Settings
from agentops_server.cli import main
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import assert_problem, audit_entries, bearer
from tests.server.derived import Hub, hub_with
from tests.server.ingest_events import batch, run_event, span_event
from tests.server.principals import People

M = Decimal(1_000_000)


def per_million(tokens: int, usd: str) -> Decimal:
    return tokens * Decimal(usd) / M


@pytest.fixture
def hub(settings: Settings) -> Any:
    with hub_with(settings) as running:
        yield running


def send(hub: Hub, key: IssuedKey, *events: dict[str, Any]) -> None:
    response = hub.client.post("/api/v1/ingest/batch", json=batch(*events), headers=bearer(key.key))
    assert response.status_code == 200, response.text
    hub.settle()


def llm(run: dict[str, Any], model: str | None, provider: str | None = None, **usage: Any) -> Any:
    info = {"model": model, "provider": provider, **usage}
    return span_event(run, llm=info)


def run_detail(hub: Hub, key: IssuedKey, run: dict[str, Any]) -> dict[str, Any]:
    response = hub.client.get(f"/api/v1/runs/{run['id']}", headers=bearer(key.key))
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def add_price(hub: Hub, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = hub.client.post("/api/v1/pricing/overrides", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def rolled_up_cost(hub: Hub, headers: dict[str, str], moment: dt.datetime) -> Decimal:
    """The org's cost on the day of ``moment``, as the analytics read it from rollups."""
    hub.settle()
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    response = hub.client.get(
        "/api/v1/analytics/costs",
        params={
            "group_by": "model",
            "from": day.isoformat(),
            "to": (day + dt.timedelta(days=1)).isoformat(),
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return Decimal(response.json()["cost"])


def test_llm_spans_are_priced_at_ingest_and_their_run_totalled(hub: Hub, org: IssuedKey) -> None:
    run = run_event()
    spans = [
        llm(
            run,
            "gpt-4o",
            "openai",
            input_tokens=10_000,
            output_tokens=500,
            cached_input_tokens=8_000,
        ),
        llm(
            run,
            "claude-sonnet-4-5-20250929",
            "anthropic",
            input_tokens=1_000,
            output_tokens=100,
            cache_write_tokens=1_000,
        ),
        span_event(run, kind="tool", name="search", llm=None),
    ]
    send(hub, org, run, *spans)

    detail = run_detail(hub, org, run)
    by_model = {span["model"]: span for span in detail["spans"] if span["model"]}
    gpt = per_million(2_000, "2.5") + per_million(8_000, "1.25") + per_million(500, "10")
    claude = per_million(1_000, "3.75") + per_million(100, "15")
    assert Decimal(by_model["gpt-4o"]["cost"]) == gpt
    assert by_model["gpt-4o"]["cost_match"] == "exact"
    assert by_model["gpt-4o"]["priced_model"] == "openai/gpt-4o"
    assert by_model["gpt-4o"]["pricing_version"].startswith("genai-prices ")
    assert Decimal(by_model["claude-sonnet-4-5-20250929"]["cost"]) == claude
    assert by_model["claude-sonnet-4-5-20250929"]["cost_match"] == "fallback"
    tool = next(span for span in detail["spans"] if span["kind"] == "tool")
    assert (tool["cost"], tool["cost_match"]) == (None, None)
    assert Decimal(detail["cost"]) == gpt + claude
    assert (detail["llm_calls"], detail["unpriced_calls"]) == (2, 0)
    assert (detail["cached_input_tokens"], detail["cache_write_tokens"]) == (8_000, 1_000)


def test_spans_arriving_after_their_run_are_added_to_its_totals(hub: Hub, org: IssuedKey) -> None:
    run = run_event()
    send(hub, org, run, llm(run, "gpt-4o-mini", "openai", input_tokens=31, output_tokens=9))
    send(hub, org, llm(run, "gpt-4o-mini", "openai", input_tokens=1_000, output_tokens=0))

    detail = run_detail(hub, org, run)

    expected = per_million(1_031, "0.15") + per_million(9, "0.6")
    assert (Decimal(detail["cost"]), detail["llm_calls"]) == (expected, 2)


def test_an_unpriced_model_is_stored_unmatched_and_shown_never_as_zero(
    hub: Hub, org: IssuedKey
) -> None:
    run = run_event()
    send(
        hub,
        org,
        run,
        llm(run, "acme-secret-llm-9", "acme", input_tokens=10, output_tokens=10),
        llm(run, "gpt-4o", "openai"),  # no usage reported
    )

    detail = run_detail(hub, org, run)

    matches = sorted(span["cost_match"] for span in detail["spans"])
    assert matches == ["no_usage", "unmatched"]
    assert all(span["cost"] is None for span in detail["spans"])
    assert detail["cost"] is None
    assert (detail["llm_calls"], detail["unpriced_calls"]) == (2, 2)
    listed = hub.client.get("/api/v1/runs", headers=bearer(org.key)).json()["items"][0]
    assert (listed["cost"], listed["unpriced_calls"]) == (None, 2)


def test_a_cost_the_sdk_sent_is_kept_beside_the_hubs_and_a_difference_flagged(
    hub: Hub, org: IssuedKey
) -> None:
    run = run_event()
    agreeing = llm(run, "gpt-4o", "openai", input_tokens=1000, output_tokens=200, cost="0.0045")
    differing = llm(run, "gpt-4o", "openai", input_tokens=1000, output_tokens=200, cost="0.01")
    send(hub, org, run, agreeing, differing)

    detail = run_detail(hub, org, run)

    flags = {span["id"]: (span["sdk_cost"], span["cost_mismatch"]) for span in detail["spans"]}
    assert Decimal(flags[agreeing["id"]][0]) == Decimal("0.0045")
    assert flags[agreeing["id"]][1] is False
    assert flags[differing["id"]][1] is True
    assert Decimal(detail["sdk_cost"]) == Decimal("0.0145")
    assert Decimal(detail["cost"]) == Decimal("0.009")
    assert detail["cost_mismatch"] is True


def test_the_orgs_own_prices_override_the_catalog_and_price_custom_models(
    hub: Hub, org: IssuedKey, people: People
) -> None:
    admin = people.add(Role.ADMIN).headers
    override = add_price(
        hub, admin, model="gpt-4o", provider="openai", input="2", output="8", cached_input="0.5"
    )
    anywhere = add_price(
        hub,
        admin,
        model="in-house-7b",
        input="0.2",
        output="0.4",
        reasoning="1.2",
        tiers=[
            {"above_input_tokens": 100_000, "input": "0.4", "output": "0.8", "reasoning": "2.4"}
        ],
    )
    assert (override["kind"], anywhere["kind"]) == ("override", "custom")
    run = run_event()
    dated = llm(
        run,
        "gpt-4o-2024-08-06",
        "openai",
        input_tokens=3_000,
        output_tokens=100,
        cached_input_tokens=1_000,
    )
    small = llm(
        run, "in-house-7b", "vllm", input_tokens=50_000, output_tokens=3_000, reasoning_tokens=2_000
    )
    large = llm(
        run, "IN-HOUSE-7B", None, input_tokens=150_000, output_tokens=3_000, reasoning_tokens=2_000
    )
    send(hub, org, run, dated, small, large)

    spans = {span["id"]: span for span in run_detail(hub, org, run)["spans"]}

    assert Decimal(spans[dated["id"]]["cost"]) == (
        per_million(2_000, "2") + per_million(1_000, "0.5") + per_million(100, "8")
    )
    assert spans[dated["id"]]["pricing_version"] == override["version"]
    assert spans[dated["id"]]["cost_match"] == "exact"  # a listed alias of the overridden model
    assert Decimal(spans[small["id"]]["cost"]) == (
        per_million(50_000, "0.2") + per_million(1_000, "0.4") + per_million(2_000, "1.2")
    )
    assert Decimal(spans[large["id"]]["cost"]) == (
        per_million(150_000, "0.4") + per_million(1_000, "0.8") + per_million(2_000, "2.4")
    )
    assert spans[large["id"]]["priced_model"] == "in-house-7b"


def test_prices_are_created_read_changed_deleted_and_each_change_audited(
    hub: Hub, org: IssuedKey, people: People
) -> None:
    owner = people.add(Role.OWNER).headers
    created = add_price(hub, owner, model="custom-llm", input="1", output="2")
    path = f"/api/v1/pricing/overrides/{created['id']}"
    changed = hub.client.put(
        path, json={"model": "custom-llm", "input": "1.5", "output": "2"}, headers=owner
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["input"] == "1.5"
    assert changed.json()["version"] != created["version"]
    listed = hub.client.get("/api/v1/pricing/overrides", headers=owner).json()["items"]
    assert [item["model"] for item in listed] == ["custom-llm"]
    effective = hub.client.get(
        "/api/v1/pricing/price", params={"model": "custom-llm"}, headers=owner
    ).json()
    assert (effective["match"], effective["source"], effective["input"]) == ("exact", "org", "1.5")
    assert hub.client.delete(path, headers=owner).status_code == 204
    assert_problem(hub.client.get(path, headers=owner), 404, "price_not_found")

    actions = [entry["action"] for entry in audit_entries(hub.client, owner, action="price.")]
    assert actions == ["price.deleted", "price.updated", "price.created"]


def test_a_price_typed_per_token_or_above_the_ceiling_is_refused_naming_the_unit(
    hub: Hub, people: People
) -> None:
    owner = people.add(Role.OWNER).headers
    per_token = hub.client.post(
        "/api/v1/pricing/overrides",
        json={"model": "m", "input": "0.000003", "output": "15"},
        headers=owner,
    )
    too_dear = hub.client.post(
        "/api/v1/pricing/overrides",
        json={"model": "m", "input": "3", "output": "15000"},
        headers=owner,
    )

    assert "per million" in assert_problem(per_token, 400, "price_not_per_million")["detail"]
    assert "per million" in assert_problem(too_dear, 400, "price_not_per_million")["detail"]
    assert hub.client.get("/api/v1/pricing/overrides", headers=owner).json()["items"] == []


def test_the_same_price_twice_conflicts(hub: Hub, people: People) -> None:
    owner = people.add(Role.OWNER).headers
    add_price(hub, owner, model="m", input="1", output="2")
    again = hub.client.post(
        "/api/v1/pricing/overrides", json={"model": "M", "input": "1", "output": "2"}, headers=owner
    )
    assert_problem(again, 409, "price_exists")


def test_viewers_and_team_leads_read_prices_but_only_admins_and_owners_change_them(
    hub: Hub, people: People
) -> None:
    body = {"model": "m", "input": "1", "output": "2"}
    for role in (Role.VIEWER, Role.TEAM_LEAD, Role.MEMBER):
        headers = people.add(role).headers
        assert (
            hub.client.get(
                "/api/v1/pricing/models", params={"search": "gpt-4o"}, headers=headers
            ).status_code
            == 200
        )
        refused = hub.client.post("/api/v1/pricing/overrides", json=body, headers=headers)
        assert_problem(refused, 403, "permission_denied")
    assert (
        hub.client.post(
            "/api/v1/pricing/overrides", json=body, headers=people.add(Role.ADMIN).headers
        ).status_code
        == 201
    )


def test_a_recompute_job_reprices_a_range_and_fixes_run_totals_after_a_price_change(
    hub: Hub, org: IssuedKey, people: People
) -> None:
    admin = people.add(Role.ADMIN).headers
    run = run_event()
    span = llm(run, "gpt-4o", "openai", input_tokens=1_000, output_tokens=1_000)
    send(hub, org, run, span)
    assert Decimal(run_detail(hub, org, run)["cost"]) == per_million(1000, "2.5") + per_million(
        1000, "10"
    )
    add_price(hub, admin, model="gpt-4o", input="1", output="2")

    started = dt.datetime.fromisoformat(span["started_at"])
    job = hub.client.post(
        "/api/v1/pricing/recompute",
        json={
            "from": (started - dt.timedelta(hours=1)).isoformat(),
            "to": (started + dt.timedelta(hours=1)).isoformat(),
        },
        headers=admin,
    )
    assert job.status_code == 202, job.text
    hub.settle()

    status = hub.client.get(f"/api/v1/pricing/recompute/{job.json()['id']}", headers=admin).json()
    assert (status["status"], status["spans_priced"], status["runs_totalled"]) == ("done", 1, 1)
    detail = run_detail(hub, org, run)
    assert Decimal(detail["cost"]) == per_million(1000, "1") + per_million(1000, "2")
    # The rollups the analytics read were made again at the new price.
    assert rolled_up_cost(hub, admin, started) == per_million(1000, "1") + per_million(1000, "2")
    assert detail["spans"][0]["pricing_version"].startswith("org:")
    assert [e["action"] for e in audit_entries(hub.client, admin, action="pricing.")] == [
        "pricing.recompute"
    ]


def test_a_backwards_range_is_refused(hub: Hub, people: People) -> None:
    admin = people.add(Role.ADMIN).headers
    response = hub.client.post(
        "/api/v1/pricing/recompute",
        json={"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        headers=admin,
    )
    assert_problem(response, 400, "invalid_range")


def test_pricing_off_stores_calls_unpriced(settings: Settings, org: IssuedKey) -> None:
    with hub_with(settings, pricing=False) as off:
        run = run_event()
        send(off, org, run, llm(run, "gpt-4o", "openai", input_tokens=1, output_tokens=1))
        span = run_detail(off, org, run)["spans"][0]
    assert (span["cost"], span["cost_match"]) == (None, None)


def test_the_cli_recomputes_a_range_at_once(
    hub: Hub, org: IssuedKey, people: People, migrated_url: str
) -> None:
    run = run_event()
    span = llm(run, "gpt-4o", "openai", input_tokens=2_000, output_tokens=0)
    send(hub, org, run, span)
    owner = people.add(Role.OWNER).headers
    add_price(hub, owner, model="gpt-4o", input="1", output="2")
    started = dt.datetime.fromisoformat(span["started_at"])
    day = started.date()
    assert rolled_up_cost(hub, owner, started) == per_million(2_000, "2.5")

    result = CliRunner().invoke(
        main,
        [
            "pricing",
            "recompute",
            "--database-url",
            migrated_url,
            "--org",
            "acme",
            "--from",
            f"{day}",
            "--to",
            f"{day + dt.timedelta(days=1)}",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "1 spans priced, 1 runs totalled, 1 hours rolled up" in result.output
    assert Decimal(run_detail(hub, org, run)["cost"]) == per_million(2_000, "1")
    assert rolled_up_cost(hub, owner, started) == per_million(2_000, "1")


def test_a_range_outside_the_calendar_is_refused_not_a_server_error(
    hub: Hub, people: People
) -> None:
    admin = people.add(Role.ADMIN).headers
    response = hub.client.post(
        "/api/v1/pricing/recompute",
        json={"from": "0001-01-01T00:00:00+01:00", "to": "2026-12-01T00:00:00Z"},
        headers=admin,
    )
    assert_problem(response, 400, "invalid_timestamp")
