"""``agentops-hub``: run the hub and manage its database.

    agentops-hub db upgrade                 # create or migrate the schema
    agentops-hub bootstrap --org acme       # the first org and API key (printed once)
    agentops-hub serve --port 8000          # the hub, on uvicorn
    agentops-hub demo                       # a local hub with the quickstart agent's run in it
    agentops-hub controls kill --org acme --reason "incident 42"   # stop every agent of acme
    agentops-hub controls list --org acme
    agentops-hub worker                     # run derived work from the queue on Redis
    agentops-hub jobs failed                # derived work that failed its last attempt
    agentops-hub jobs retry ID|--all        # ... handed over again
    agentops-hub jobs retention             # drop expired span partitions, purge each org
    agentops-hub jobs partitions            # span partitions ahead of time (PostgreSQL)
    agentops-hub analytics rebuild --org acme --from 2026-11-01 --to 2026-12-01

Settings come from ``AGENTOPS_*`` variables (see ``agentops_server.settings``); ``--database-url``
overrides ``AGENTOPS_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from agentops_server.analytics_cli import analytics
from agentops_server.pricing_cli import pricing
from agentops_server.settings import DEFAULT_DATABASE_URL, Settings

__all__ = ["main"]

database_option = click.option(
    "--database-url",
    envvar="AGENTOPS_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="sqlite:///file.db or postgresql+psycopg://user@host/db",
)


@click.group()
def main() -> None:
    """AgentOps Hub: the control plane for AI agents."""


@main.command()
@database_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Processes to run.")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="db upgrade first.")
def serve(database_url: str, host: str, port: int, workers: int, migrate: bool) -> None:
    """Serve the hub (uvicorn, the production ASGI server)."""
    import structlog
    import uvicorn

    from agentops_server.db.migrate import upgrade
    from agentops_server.observability import configure_logging

    os.environ["AGENTOPS_DATABASE_URL"] = database_url  # worker processes read it too
    random_key = not os.environ.get("AGENTOPS_SECRET_KEY", "").strip()
    if random_key:
        # Every worker must sign and check tokens with one key; a random one lasts this run.
        os.environ["AGENTOPS_SECRET_KEY"] = secrets.token_urlsafe(32)
    settings = Settings.from_env()  # fail here, clearly, on a bad setting
    configure_logging(settings)
    if random_key:
        structlog.get_logger("agentops_server").warning(
            "AGENTOPS_SECRET_KEY is not set: a random key is used, so sign-ins end when the hub "
            "restarts. Set it in production."
        )
    if migrate:
        upgrade(database_url)
    uvicorn.run(
        "agentops_server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
        # The app believes X-Forwarded-* itself, from AGENTOPS_TRUSTED_PROXIES only; uvicorn's
        # own default would believe them from 127.0.0.1.
        proxy_headers=False,
        # Streams (GET /api/v1/stream) never end by themselves: at shutdown they are cut after
        # this many seconds, and their SDKs resume on another hub process.
        timeout_graceful_shutdown=10,
    )


redis_option = click.option(
    "--redis-url", envvar="AGENTOPS_REDIS_URL", help="The queue's Redis (AGENTOPS_REDIS_URL)."
)
queue_option = click.option(
    "--queue",
    "queue_name",
    envvar="AGENTOPS_QUEUE_NAME",
    default="agentops",
    show_default=True,
    help="The queue's name on Redis.",
)


@main.command()
@database_option
@redis_option
@queue_option
@click.option("--concurrency", default=10, show_default=True, help="Jobs run at once.")
@click.option(
    "--sweep-interval",
    default=60.0,
    show_default=True,
    help="Seconds between sweeps of the outbox for work the queue never got.",
)
@click.option(
    "--grace", default=60.0, show_default=True, help="A sweep hands over work older than this."
)
@click.option(
    "--shutdown-grace",
    default=10,
    show_default=True,
    help="Seconds running jobs get to finish at SIGTERM.",
)
@click.option(
    "--tasks",
    "extra_tasks",
    multiple=True,
    metavar="MODULE:FUNCTION",
    help="Also register the tasks of this registrar (plugins); repeatable.",
)
def worker(
    *,
    database_url: str,
    redis_url: str | None,
    queue_name: str,
    concurrency: int,
    sweep_interval: float,
    grace: float,
    shutdown_grace: int,
    extra_tasks: tuple[str, ...],
) -> None:
    """Run derived work from the queue on Redis until SIGTERM; run as many as needed, anywhere
    the database and Redis are reachable."""
    from agentops_server.backends import SaqQueue, create_derived_work, create_mailer
    from agentops_server.backends.live import LiveUpdates
    from agentops_server.db.engine import create_async_db_engine
    from agentops_server.observability import configure_logging
    from agentops_server.services.tasks import TaskContext, register_tasks

    if not redis_url:
        raise click.UsageError("a worker needs the queue: set --redis-url or AGENTOPS_REDIS_URL")
    settings = Settings.from_env(
        database_url=database_url, redis_url=redis_url, queue_name=queue_name
    )
    configure_logging(settings)
    registrars = [_load(spec) for spec in extra_tasks]

    async def work() -> None:
        queue = create_derived_work(settings)
        assert isinstance(queue, SaqQueue), "redis_url is set"
        engine = create_async_db_engine(settings.database_url, tenant_isolation=True)
        live = LiveUpdates.from_settings(settings, engine)  # announces through Redis
        context = TaskContext(engine, settings, create_mailer(settings), live=live)
        register_tasks(queue, context, extra=registrars)
        try:
            await queue.work(
                concurrency=concurrency,
                sweep_interval=sweep_interval,
                grace=grace,
                shutdown_grace=shutdown_grace,
            )
        finally:
            await queue.close()
            await live.close()
            await engine.dispose()

    asyncio.run(work())


@main.group()
def jobs() -> None:
    """Derived work that failed its last attempt (the dead letters of the queue on Redis)."""


@jobs.command("failed")
@database_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def jobs_failed(database_url: str, as_json: bool) -> None:
    """List the tasks that failed their last attempt: task, payload, error, when."""
    from agentops_server.backends import Outbox

    async def read() -> list[dict[str, str]]:
        outbox = Outbox(database_url)
        try:
            return [
                {
                    "id": str(letter.item.id),
                    "notice": letter.item.notice,
                    "task": letter.item.task,
                    "payload": json.dumps(letter.item.payload, sort_keys=True),
                    "error": letter.error,
                    "failed_at": letter.failed_at.isoformat(),
                }
                for letter in await outbox.dead_letters()
            ]
        finally:
            await outbox.close()

    for letter in asyncio.run(read()):
        if as_json:
            click.echo(json.dumps({**letter, "payload": json.loads(letter["payload"])}))
        else:
            click.echo("  ".join(letter[key] for key in ("id", "failed_at", "task", "payload")))
            click.echo(f"    {letter['error']}")


@jobs.command("retry")
@database_option
@redis_option
@queue_option
@click.argument("ids", nargs=-1, type=click.UUID)
@click.option("--all", "every", is_flag=True, help="Retry every failed job.")
def jobs_retry(
    database_url: str, redis_url: str | None, queue_name: str, ids: tuple[Any, ...], every: bool
) -> None:
    """Hand failed jobs over again (by id, or --all); with no queue reachable, the workers'
    next sweep hands them over."""
    from agentops_server.backends import Outbox, SaqQueue

    if bool(ids) == every:
        raise click.UsageError("give the ids of failed jobs, or --all")

    async def retry() -> tuple[int, int]:
        outbox = Outbox(database_url)
        revived = await outbox.revive(None if every else list(ids))
        if not redis_url:
            await outbox.close()
            return len(revived), 0
        queue = SaqQueue(redis_url, outbox, name=queue_name)
        try:
            return len(revived), await queue.hand_over(revived)
        finally:
            await queue.close()

    revived, handed = asyncio.run(retry())
    click.echo(f"{revived} jobs pending again, {handed} handed to the queue")


@jobs.command("retention")
@database_option
@click.option("--org", "org_slug", default=None, help="Only this org (its slug); default: all.")
def jobs_retention(database_url: str, org_slug: str | None) -> None:
    """Delete the raw runs and spans each org keeps no longer (its retention_days), then the
    runs' rollup contributions (the rollups stay): on PostgreSQL first the day partitions no
    org keeps, whole; then, in small batches that never hold up ingest, what is left of each
    org's. The hub does this daily by itself unless AGENTOPS_UPKEEP=false (then run this
    daily)."""
    from agentops_server.db.engine import create_async_db_engine
    from agentops_server.services.telemetry.retention import purge_org

    orgs = _org_slugs(database_url)
    if org_slug is not None:
        orgs = {slug: org_id for slug, org_id in orgs.items() if slug == org_slug}
        if not orgs:
            raise click.ClickException(f"no org has the slug {org_slug!r}")
    if org_slug is None:
        _keep_partitions(database_url)

    async def apply() -> None:
        engine = create_async_db_engine(database_url, tenant_isolation=True)
        try:
            for slug, org_id in sorted(orgs.items()):
                purged = await purge_org(engine, org_id)
                click.echo(
                    f"{slug}: {purged.runs} runs, {purged.spans} spans, "
                    f"{purged.documents} search documents, "
                    f"{purged.contributions} rollup contributions deleted"
                )
        finally:
            await engine.dispose()

    asyncio.run(apply())


@jobs.command("partitions")
@database_option
def jobs_partitions(database_url: str) -> None:
    """On PostgreSQL: make the span partitions of the coming days, move rows out of the default
    partition, drop the days no org keeps. Nothing to do on SQLite."""
    _keep_partitions(database_url)


def _keep_partitions(database_url: str) -> None:
    """Prepare and drop span partitions as the database's own user, and say what was done."""
    from agentops_server.services.telemetry.partitions import keep

    if Settings(database_url=database_url).is_sqlite:
        return
    made, gone = asyncio.run(keep(database_url))
    click.echo(
        f"span partitions: {made.created} made, {made.split} split out of the default, "
        f"{len(gone.dropped)} dropped" + (f", {len(gone.busy)} busy" if gone.busy else "")
    )


def _load(spec: str) -> Any:
    """The object ``module:name`` names."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"{spec}: {exc}", param_hint="--tasks") from exc


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@database_option
@click.option("--revision", default="head", show_default=True)
def db_upgrade(database_url: str, revision: str) -> None:
    """Create the schema, or migrate it to ``revision``."""
    from agentops_server.db.migrate import upgrade

    upgrade(database_url, revision)
    click.echo(f"database at {revision}")


@main.command()
@database_option
@click.option("--org", "org_name", required=True, help="Name of the org to create.")
@click.option("--json", "as_json", is_flag=True, help='Print {"org_id": ..., "api_key": ...}.')
@click.option("--owner", "owner_email", help="Also create the org's owner with this email.")
@click.option(
    "--owner-password",
    envvar="AGENTOPS_OWNER_PASSWORD",
    help="The owner's password (default: asked for; or AGENTOPS_OWNER_PASSWORD).",
)
def bootstrap(
    database_url: str,
    org_name: str,
    as_json: bool,
    owner_email: str | None,
    owner_password: str | None,
) -> None:
    """Create an org and its first API key (printed once, never stored), and optionally its
    owner, who can then sign in (``POST /api/v1/auth/login``)."""
    from agentops_server.db.engine import run_in_session
    from agentops_server.db.migrate import upgrade
    from agentops_server.refusals import Refused
    from agentops_server.services.identity.orgs import SlugTaken, bootstrap_org

    if owner_email is not None and owner_password is None:
        owner_password = click.prompt("Owner's password", hide_input=True, confirmation_prompt=True)
    upgrade(database_url)
    try:
        issued = run_in_session(
            database_url,
            lambda session: bootstrap_org(
                session, org_name, owner_email=owner_email, owner_password=owner_password or ""
            ),
        )
    except SlugTaken as exc:
        raise click.ClickException(
            f"an org named {org_name!r} (slug {exc.slug!r}) already exists"
        ) from exc
    except Refused as exc:
        raise click.ClickException(exc.detail) from exc
    if as_json:
        click.echo(json.dumps({"org_id": str(issued.org_id), "api_key": issued.key}))
        return
    click.echo(f"org     {org_name} ({issued.org_id})")
    click.echo(f"api key {issued.key}")
    click.echo("Keep the key now: the hub stores only its hash.", err=True)


@main.command()
@click.option(
    "--database-url",
    default="sqlite:///.agentops/hub.db",
    show_default=True,
    help="Where the demo keeps its data (not read from AGENTOPS_DATABASE_URL).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, help="0 picks a free port.")
@click.option("--org", "org_name", default="demo", show_default=True, help="Created if missing.")
@click.option(
    "--example",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The SDK script to run against the hub.  [default: examples/quickstart.py]",
)
@click.option("--once", is_flag=True, help="Exit once the example's run shows in the API.")
@click.option(
    "--seed",
    is_flag=True,
    help="Also fill the org with a month of agents' runs, budgets, policies and an approval.",
)
def demo(
    *,
    database_url: str,
    host: str,
    port: int,
    org_name: str,
    example: Path | None,
    once: bool,
    seed: bool,
) -> None:
    """Serve a local hub, run the quickstart agent against it, print the URL and a new key."""
    from agentops_server.demo import DemoFailed, DemoOptions, run_demo

    options = DemoOptions(
        database_url=database_url,
        host=host,
        port=port,
        org_name=org_name,
        example=example,
        once=once,
        seed=seed,
    )
    try:
        run_demo(options, click.echo)
    except DemoFailed as exc:
        raise click.ClickException(str(exc)) from exc


@main.group()
def controls() -> None:
    """Pause, kill and resume an org's agents straight on the database: it works with the web
    app down. Without a scope option the whole org is the scope. Each change is audited, bumps
    the org's control version (the hubs watching it push it to SDKs) and acts as ``cli``."""


def _control_command(state: str, verb: str) -> Callable[..., None]:
    """The ``controls <verb>`` command, setting ``state`` at the scope given."""

    @database_option
    @click.option("--org", "org_slug", required=True, help="The org's slug (as bootstrap made it).")
    @click.option("--agent", help="One agent, by name.")
    @click.option("--team", help="One team, by name.")
    @click.option("--tag", help="Agents and runs with this tag.")
    @click.option("--environment", type=click.Choice(["prod", "staging", "test", "dev"]))
    @click.option("--run", "run_id", help="One run, by id.")
    @click.option("--reason", required=True, help="Why (kept in the control and the audit log).")
    @click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Seconds.")
    @click.option(
        "--pause-timeout",
        type=click.FloatRange(0, 3600),
        default=0.0,
        show_default=True,
        help="Seconds a paused call waits for a resume.",
    )
    def command(
        *,
        database_url: str,
        org_slug: str,
        reason: str,
        duration: float | None,
        pause_timeout: float,
        **scopes: str | None,
    ) -> None:
        from agentops_server.services.governance import controls as service
        from agentops_server.services.governance.operators import Operator
        from agentops_server.values import Text

        given = [(kind, value) for kind, value in scopes.items() if value is not None]
        if len(given) > 1:
            raise click.UsageError(
                "give at most one of --agent, --team, --tag, --environment, --run"
            )
        kind, value = given[0] if given else ("org", None)
        kind = "run" if kind == "run_id" else kind

        def set_it(session: Any, operator: Any) -> Any:
            request = service.ControlRequest(
                scope=service.ScopeRequest(kind=kind, value=None if value is None else Text(value)),  # type: ignore[arg-type]
                state=state,  # type: ignore[arg-type]
                reason=Text(reason),
                duration=duration,
                pause_timeout=pause_timeout,
            )
            return service.set_control(session, operator, request)

        control = _as_org(database_url, org_slug, set_it)
        where = control.scope.kind + (f" {control.scope.value}" if control.scope.value else "")
        until = f" until {control.expires_at.isoformat()}" if control.expires_at else ""
        click.echo(f"{verb}: {where}{until} (control {control.id}, version {control.version})")
        operator = Operator.cli(_org_id(database_url, org_slug))
        _announce(database_url, service.notice(operator, [control], verb, reason))  # type: ignore[arg-type]

    command.__doc__ = f"Set {state} at a scope of the org (default: the whole org)."
    return command


for _state, _verb in (("killed", "kill"), ("paused", "pause"), ("active", "resume")):
    controls.command(_verb)(_control_command(_state, _verb))


@controls.command("list")
@database_option
@click.option("--org", "org_slug", required=True, help="The org's slug (as bootstrap made it).")
@click.option("--json", "as_json", is_flag=True, help="Print the control set as SDKs read it.")
def list_controls(database_url: str, org_slug: str, as_json: bool) -> None:
    """The org's controls and its control version."""
    from agentops_server.services.governance.controls import load_control_set

    found = _as_org(
        database_url, org_slug, lambda session, operator: load_control_set(session, operator.org_id)
    )
    if as_json:
        click.echo(found.model_dump_json(indent=2))
        return
    click.echo(f"version {found.version}")
    for control in found.controls:
        where = control.scope.kind + (f" {control.scope.value}" if control.scope.value else "")
        until = f" until {control.expires_at.isoformat()}" if control.expires_at else ""
        click.echo(
            f"{control.id}  {control.state:<7} {where}{until}  by {control.actor}: {control.reason}"
        )


def _announce(database_url: str, notice: dict[str, Any]) -> None:
    """Hand the ``governance.control_changed`` notice of a change to the queue on Redis (it is
    recorded in the outbox first, so a worker sends the notifications even if Redis is down
    now). With no queue configured, nobody is notified: said on stderr."""
    from agentops_server.backends import create_derived_work, create_mailer
    from agentops_server.db.engine import create_async_db_engine
    from agentops_server.services.governance.controls import CONTROL_CHANGED
    from agentops_server.services.tasks import TaskContext, register_tasks

    settings = Settings.from_env(database_url=database_url)
    if settings.redis_url is None:
        click.echo(
            "No queue (AGENTOPS_REDIS_URL is not set): members are not notified of this change.",
            err=True,
        )
        return

    async def hand_over() -> None:
        engine = create_async_db_engine(settings.database_url, tenant_isolation=True)
        queue = create_derived_work(settings)
        register_tasks(queue, TaskContext(engine, settings, create_mailer(settings)))
        try:
            await queue.enqueue(CONTROL_CHANGED, notice)
        finally:
            await queue.close()
            await engine.dispose()

    asyncio.run(hand_over())


def _as_org(database_url: str, org_slug: str, work: Callable[[Any, Any], Any]) -> Any:
    """Run ``work(session, operator)`` for the org ``org_slug`` as the CLI, in a session isolated
    to that org; a refusal is the command's error."""
    from agentops_server.db.engine import run_in_session
    from agentops_server.db.tenancy import tenant
    from agentops_server.refusals import Refused
    from agentops_server.services.governance.operators import Operator

    org_id = _org_id(database_url, org_slug)

    async def as_org(session: Any) -> Any:
        with tenant(org_id=org_id):
            return await work(session, Operator.cli(org_id))

    try:
        return run_in_session(database_url, as_org)
    except Refused as exc:
        raise click.ClickException(exc.detail) from exc


def _org_slugs(database_url: str) -> dict[str, uuid.UUID]:
    """Every org's id by slug, read as the database's own user."""
    from sqlalchemy import select

    from agentops_server.db.engine import create_db_engine
    from agentops_server.db.models import Org

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            table = Org.__table__
            found = connection.execute(select(table.c.slug, table.c.id)).all()
    finally:
        engine.dispose()
    return {slug: uuid.UUID(str(org_id)) for slug, org_id in found}


def _org_id(database_url: str, org_slug: str) -> uuid.UUID:
    """The id of the org with ``org_slug``, read as the database's own user (an org's rows are
    out of sight until one acts for it)."""
    from sqlalchemy import select

    from agentops_server.db.engine import create_db_engine
    from agentops_server.db.models import Org

    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            table = Org.__table__
            found = connection.execute(select(table.c.id).where(table.c.slug == org_slug)).scalar()
    finally:
        engine.dispose()
    if found is None:
        raise click.ClickException(f"no org has the slug {org_slug!r}")
    return uuid.UUID(str(found))


main.add_command(pricing)
main.add_command(analytics)

if __name__ == "__main__":
    sys.exit(main())
