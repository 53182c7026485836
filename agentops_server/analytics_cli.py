"""``agentops-hub analytics``: rollups from the command line (registered by :mod:`.cli`)."""

from __future__ import annotations

import asyncio
import datetime as dt

import click

from agentops_server.settings import DEFAULT_DATABASE_URL

__all__ = ["analytics"]


@click.group()
def analytics() -> None:
    """Analytics rollups."""


@analytics.command("rebuild")
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
def rebuild_command(database_url: str, org_slug: str, start: dt.datetime, end: dt.datetime) -> None:
    """Roll up again every hour of [FROM, TO) in which one of the org's runs started, now, in
    this process: for runs stored before rollups existed, or spans re-priced since."""
    from agentops_server.cli import _org_id
    from agentops_server.db.engine import create_async_db_engine
    from agentops_server.services.analytics.rollups import roll_up_range

    if end <= start:
        raise click.ClickException("--to must be after --from")
    org_id = _org_id(database_url, org_slug)

    async def rebuild() -> int:
        engine = create_async_db_engine(database_url, tenant_isolation=True)
        try:
            return await roll_up_range(
                engine, org_id, start.replace(tzinfo=dt.UTC), end.replace(tzinfo=dt.UTC)
            )
        finally:
            await engine.dispose()

    click.echo(f"{asyncio.run(rebuild())} hours rolled up")
