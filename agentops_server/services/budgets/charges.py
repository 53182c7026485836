"""The ledger of spend, fed from ingest: each LLM span's cost charged to every budget whose
scope its run falls in, in the window of the span's start.

It is derived work: a task of the :data:`~agentops_server.services.telemetry.ingest.
EVENTS_COMMITTED` notice charges the priced LLM spans a commit stored, and those of the runs it
stored (a span may arrive before its run: it is charged when the run arrives, since its scope
is the run's agent, environment and tags, and the registry's team and tags of that agent).
Charging is idempotent: a span is charged to a budget once (the ledger's unique
``(org_id, budget_id, span_id)``, written ``ON CONFLICT DO NOTHING``), however often it is
ingested or the task runs. A span priced by the hub is charged its cost; an unpriced one is
charged the budget's ``unknown_cost_ceiling`` when it has one, else nothing (its run shows it
as an unpriced call). A span naming leases (:data:`~agentops_sdk.contract.budgets.
LEASES_ATTRIBUTE`) links its charge to the lease of that budget among them.

:func:`reset_budget` writes off a window's spend so far, as the ledger is append-only: one
compensating entry (the negative of the window's sum, under a span id of its own), audited as
``budget.reset`` and announced as a ``reset``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Table, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.budgets import LEASES_ATTRIBUTE, BudgetState
from agentops_sdk.contract.controls import AgentProfile, ControlScope
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.db.models import Agent, BudgetLease, BudgetLedgerEntry, BudgetRow, Run, Span
from agentops_server.db.upsert import dialect_insert
from agentops_server.refusals import Invalid
from agentops_server.services import audit
from agentops_server.services.budgets.definitions import budget_row, check_reach, notify_change
from agentops_server.services.budgets.state import (
    budget_state,
    lock_budget,
    plain,
    spent_in,
    utc_now,
    window_at,
)
from agentops_server.services.costs.run_totals import chunks
from agentops_server.services.governance.control_sets import profile_of, team_names
from agentops_server.services.governance.operators import Operator

__all__ = ["charge_spans", "reset_budget"]

RESET_RUN: Final = uuid.UUID(int=0)
"""The run id of a reset's compensating entry (it charges no run)."""


async def charge_spans(
    session: AsyncSession,
    org_id: uuid.UUID,
    span_ids: Iterable[uuid.UUID],
    run_ids: Iterable[uuid.UUID],
) -> set[uuid.UUID]:
    """Charge the LLM spans ``span_ids`` and those of the runs ``run_ids`` to the org's budgets
    they fall in (not committed); the ids of the budgets charged anything new."""
    budgets = list(await session.scalars(select(BudgetRow).where(BudgetRow.org_id == org_id)))
    if not budgets:
        return set()
    spans = await _calls(session, org_id, list(span_ids), list(run_ids))
    if not spans:
        return set()
    profiles = await _profiles(session, org_id, {run.agent for _span, run in spans})
    leases = await _leases(session, org_id, spans)
    now = dt.datetime.now(dt.UTC)
    entries = []
    for span, run in spans:
        tags = tuple(dict.fromkeys([*run.tags, *span.tags]))
        for budget in budgets:
            scope = ControlScope(kind=budget.scope_kind, value=budget.scope_value or None)  # type: ignore[arg-type]
            if not scope.applies_to(
                agent=run.agent,
                environment=run.environment,
                tags=tags,
                run_id=str(run.id),
                profile=profiles.get(run.agent),
            ):
                continue
            amount = span.cost if span.cost is not None else _unknown(budget)
            if amount is None:
                continue
            entries.append(
                {
                    "org_id": org_id,
                    "id": uuid.uuid4(),
                    "budget_id": budget.id,
                    "window_start": window_at(budget, span.started_at).key,
                    "amount_usd": amount,
                    "tokens": (span.input_tokens or 0) + (span.output_tokens or 0),
                    "span_id": span.id,
                    "run_id": run.id,
                    "lease_id": leases.get((span.id, budget.id)),
                    "at": now,
                }
            )
    return await _insert(session, entries)


async def reset_budget(
    session: AsyncSession,
    operator: Operator,
    budget_id: uuid.UUID,
    reason: str,
    derived: DerivedWork | None = None,
    *,
    now: dt.datetime | None = None,
) -> BudgetState:
    """Write off the spend of the budget's window at ``now`` (the system's time) so far
    (leases keep what they hold); audit; commit; notify. Refusals: ``budget_not_found``,
    ``not_your_team``, ``invalid_reason``."""
    reason = reason.strip()
    if not 1 <= len(reason) <= 1024:
        raise Invalid("invalid_reason", "Say why, in 1 to 1,024 characters.")
    row = await budget_row(session, operator.org_id, budget_id)
    await check_reach(session, operator, row)
    await lock_budget(session, operator.org_id, budget_id)
    now = now or utc_now()
    window = window_at(row, now)
    spent, tokens = await spent_in(session, operator.org_id, budget_id, window)
    session.add(
        BudgetLedgerEntry(
            org_id=operator.org_id,
            id=uuid.uuid4(),
            budget_id=budget_id,
            window_start=window.key,
            amount_usd=-spent,
            tokens=-tokens,
            span_id=uuid.uuid4(),
            run_id=RESET_RUN,
            at=now,
        )
    )
    await audit.record(
        session,
        operator.org_id,
        operator.audit,
        "budget.reset",
        target_type="budget",
        target_id=budget_id,
        before={"window_start": window.key.isoformat(), "spent_usd": str(plain(spent))},
        after={"window_start": window.key.isoformat(), "spent_usd": "0", "reason": reason},
    )
    await session.commit()
    await notify_change(derived, operator, row, "reset", row.limit_usd)
    return await budget_state(session, row, now)


async def _calls(
    session: AsyncSession, org_id: uuid.UUID, span_ids: list[uuid.UUID], run_ids: list[uuid.UUID]
) -> list[tuple[Span, Run]]:
    """The LLM spans among ``span_ids`` and of ``run_ids`` whose run is stored, with it."""
    found: dict[uuid.UUID, tuple[Span, Run]] = {}
    is_call = or_(Span.kind == "llm", Span.model.is_not(None), Span.cost.is_not(None))
    for chosen, column in ((span_ids, Span.id), (run_ids, Span.run_id)):
        for chunk in chunks(chosen):
            rows = await session.execute(
                select(Span, Run)
                .join(Run, (Run.org_id == Span.org_id) & (Run.id == Span.run_id))
                .where(Span.org_id == org_id, column.in_(chunk), is_call)
            )
            for span, run in rows:
                found[span.id] = (span, run)
    return list(found.values())


async def _profiles(
    session: AsyncSession, org_id: uuid.UUID, names: set[str]
) -> dict[str, AgentProfile]:
    teams = await team_names(session, org_id)
    agents = await session.scalars(
        select(Agent).where(Agent.org_id == org_id, Agent.name.in_(sorted(names)))
    )
    return {agent.name: profile_of(agent, teams) for agent in agents}


async def _leases(
    session: AsyncSession, org_id: uuid.UUID, spans: list[tuple[Span, Run]]
) -> dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID]:
    """For each span naming leases, the lease it names of each budget: ``(span, budget)``."""
    named = {span.id: _lease_ids(span.attributes) for span, _run in spans}
    wanted = sorted({lease for ids in named.values() for lease in ids})
    budget_of: dict[uuid.UUID, uuid.UUID] = {}
    for chunk in chunks(wanted):
        rows = await session.execute(
            select(BudgetLease.id, BudgetLease.budget_id).where(
                BudgetLease.org_id == org_id, BudgetLease.id.in_(chunk)
            )
        )
        budget_of.update((lease_id, budget_id) for lease_id, budget_id in rows)
    return {
        (span_id, budget_of[lease]): lease
        for span_id, ids in named.items()
        for lease in ids
        if lease in budget_of
    }


def _lease_ids(attributes: Any) -> list[uuid.UUID]:
    """The lease ids a span's attributes name (a list of ids, or one comma-separated text)."""
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    value = attributes.get(LEASES_ATTRIBUTE) if isinstance(attributes, Mapping) else None
    items = value.split(",") if isinstance(value, str) else value
    found = []
    for item in items if isinstance(items, list) else []:
        try:
            found.append(uuid.UUID(str(item).strip()))
        except ValueError:
            continue
    return found


def _unknown(budget: BudgetRow) -> Decimal | None:
    """What an unpriced call is charged to ``budget``: its ceiling, if it charges one."""
    return budget.unknown_cost_ceiling if budget.on_unknown_cost == "ceiling" else None


async def _insert(session: AsyncSession, entries: list[dict[str, Any]]) -> set[uuid.UUID]:
    table = BudgetLedgerEntry.__table__
    assert isinstance(table, Table)
    charged: set[uuid.UUID] = set()
    for chunk in chunks(entries):
        statement = (
            dialect_insert(session, table)
            .values(list(chunk))
            .on_conflict_do_nothing(index_elements=["org_id", "budget_id", "span_id"])
            .returning(table.c.budget_id)
        )
        charged.update((await session.execute(statement)).scalars())
    return charged
