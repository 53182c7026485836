"""``agentops-hub pricing``: costs from the command line (registered by :mod:`.cli`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from agentops_server.settings import DEFAULT_DATABASE_URL

__all__ = ["pricing"]


@click.group()
def pricing() -> None:
    """Prices and costs."""


@pricing.command("recompute")
@click.option(
    "--database-url",
    envvar="AGENTOPS_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="sqlite:///file.db or postgresql+psycopg://user@host/db",
)
@click.option("--org", "org_slug", required=True, help="The org's slug (as bootstrap made it).")
@click.option("--from", "start", type=click.DateTime(), required=True, help="UTC, inclusive.")
@click.option("--to", "end", type=click.DateTime(), required=True, help="UTC, exclusive.")
def recompute_command(
    database_url: str, org_slug: str, start: dt.datetime, end: dt.datetime
) -> None:
    """Re-price the org's LLM spans that started in [FROM, TO) at today's prices, fix their
    runs' totals and the rollups of their hours, now, in this process (audited
    ``pricing.recompute`` as the system)."""
    from agentops_server.cli import _as_org
    from agentops_server.services import audit
    from agentops_server.services.analytics.rollups import roll_up_runs
    from agentops_server.services.costs.totals import recompute

    if end <= start:
        raise click.ClickException("--to must be after --from")
    start, end = start.replace(tzinfo=dt.UTC), end.replace(tzinfo=dt.UTC)

    async def work(session: Any, operator: Any) -> tuple[int, int, int]:
        done = await recompute(session, operator.org_id, start, end)
        await audit.record(
            session,
            operator.org_id,
            audit.SYSTEM,
            "pricing.recompute",
            target_type="pricing_job",
            target_id=None,
            after={"from": start.isoformat(), "to": end.isoformat(), "via": "cli"},
        )
        await session.commit()
        hours = await roll_up_runs(session, operator.org_id, done.run_ids)
        return done.spans, done.runs, len(hours)

    spans, runs, hours = _as_org(database_url, org_slug, work)
    click.echo(f"{spans} spans priced, {runs} runs totalled, {hours} hours rolled up")
