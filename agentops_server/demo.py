"""``agentops-hub demo``: the hub on a local database, with a real agent run already in it.

The demo migrates the database, reuses its org (creating it on the first run) with a fresh API
key (a key is shown once, so every run makes one), serves the hub on uvicorn in this process,
runs the SDK example ``examples/quickstart.py`` as a subprocess pointed at the hub, waits until
the example's run can be read back through the API, and prints where to look, with a one-time
sign-in link that opens the pages as the org's owner (the hub runs in demo mode, the only one
that accepts such links: :mod:`agentops_server.services.identity.sign_in_links`). With ``seed``
it then fills the org with a month of realistic data through the API
(:mod:`agentops_server.demo_seed`). It keeps serving
until Ctrl+C, or stops there with ``once=True`` (for tests and CI).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from agentops_server.app import create_app
from agentops_server.db.engine import create_db_engine, run_in_session
from agentops_server.db.migrate import upgrade
from agentops_server.db.models import Org
from agentops_server.db.tenancy import tenant
from agentops_server.security.api_keys import SCOPES
from agentops_server.services.audit import SYSTEM
from agentops_server.services.identity.api_keys import IssuedKey, issue_org_key
from agentops_server.services.identity.orgs import bootstrap_org, ensure_owner
from agentops_server.services.identity.sign_in_links import SIGN_IN_LINK_TTL, issue_sign_in_link
from agentops_server.settings import Settings
from agentops_server.slugs import slugify

__all__ = ["DemoFailed", "DemoOptions", "demo_key", "demo_sign_in_link", "run_demo"]

EXAMPLE = Path("examples") / "quickstart.py"
STARTUP_TIMEOUT = 30.0
EXAMPLE_TIMEOUT = 120.0
VISIBLE_TIMEOUT = 10.0


class DemoFailed(Exception):
    """The demo could not start, or its example run never reached the hub."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What ``agentops-hub demo`` was asked for."""

    database_url: str
    host: str
    port: int
    org_name: str
    example: Path | None  # None: examples/quickstart.py
    once: bool
    seed: bool = False
    """Also fill the org with a month of realistic data (:mod:`agentops_server.demo_seed`)."""


def run_demo(options: DemoOptions, echo: Callable[[str], None]) -> None:
    """Run the demo (see the module docstring); raise :class:`DemoFailed` when it cannot."""
    example = _find_example(options.example)
    issued = demo_key(options.database_url, options.org_name)
    listener = _listen(options.host, options.port)
    url = f"http://{_connectable(options.host)}:{listener.getsockname()[1]}"
    settings = Settings.from_env(database_url=options.database_url, demo=True)
    sign_in = demo_sign_in_link(settings, url, issued.org_id, options.org_name)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll of the API
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), log_level="warning", access_log=False)
    )
    stopped = threading.Event()
    failures: list[str] = []

    def show() -> None:
        try:
            _wait_until(lambda: server.started or stopped.is_set(), STARTUP_TIMEOUT, "start")
            if stopped.is_set():
                return
            echo(f"AgentOps Hub demo at {url}")
            echo(f"  org      {options.org_name} ({issued.org_id})")
            echo(f"  api key  {issued.key}  (shown once: the hub keeps only its hash)")
            echo(f"  sign in  {sign_in}")
            minutes = SIGN_IN_LINK_TTL // 60
            echo(f"           (the org's owner: the link works once, within {minutes} minutes)")
            echo(f"\nRunning {example} against the hub...\n")
            run_id = _run_example(example, url, issued.key)
            echo(_describe(url, issued.key, run_id))
            if options.seed:
                echo("\nSeeding the org with a month of agents' runs, budgets and policies...")
                echo(_seed(url, issued.key))
            if not options.once:
                echo("\nServing until Ctrl+C. Send your own agent's runs here with")
                echo(f"  AGENTOPS_HUB_URL={url} AGENTOPS_API_KEY={issued.key}")
        except Exception as exc:  # reported here; with once=True it also fails the command
            failures.append(str(exc) or type(exc).__name__)
            echo(f"demo: {failures[-1]}")
        finally:
            if options.once:
                server.should_exit = True

    shower = threading.Thread(target=show, name="agentops-demo", daemon=True)
    shower.start()
    try:
        server.run(sockets=[listener])
    finally:
        stopped.set()
        listener.close()
    shower.join(timeout=5)
    if failures and options.once:
        raise DemoFailed(failures[0])


def demo_key(database_url: str, org_name: str) -> IssuedKey:
    """Migrate the database; a new all-scopes key of the org ``org_name``, made if missing."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    upgrade(database_url)
    engine = create_db_engine(database_url)  # the org is looked up by name, across orgs
    try:
        with Session(engine) as session:
            org_id = session.scalar(select(Org.id).where(Org.name == org_name))
    finally:
        engine.dispose()
    if org_id is None:
        return run_in_session(database_url, lambda session: bootstrap_org(session, org_name))
    return run_in_session(database_url, lambda session: _new_key(session, org_id))


def demo_sign_in_link(settings: Settings, url: str, org_id: uuid.UUID, org_name: str) -> str:
    """A one-time link to the pages of the hub at ``url``, signing the browser in as an owner of
    the org (made when the org has none: ``demo-owner+<slug>@example.com``, with no password)."""
    email = f"demo-owner+{slugify(org_name)}@example.com"
    owner_id = run_in_session(
        settings.database_url, lambda session: ensure_owner(session, org_id, email)
    )
    return f"{url}/sign-in/link?token={issue_sign_in_link(settings, owner_id, org_id)}"


async def _new_key(session: AsyncSession, org_id: uuid.UUID) -> IssuedKey:
    with tenant(org_id=org_id):
        issued = await issue_org_key(session, org_id, SYSTEM, name="demo", scopes=SCOPES)
        await session.commit()
    return issued


def _find_example(given: Path | None) -> Path:
    """The example to run: ``given``, or the quickstart of this checkout."""
    if given is not None:
        return given
    source_tree = Path(__file__).resolve().parents[1] / EXAMPLE  # an editable install
    for candidate in (EXAMPLE, source_tree):
        if candidate.is_file():
            return candidate
    raise DemoFailed(
        f"no {EXAMPLE} here: run the demo from the repository checkout, or pass --example PATH"
    )


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), bound before uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise DemoFailed(f"cannot listen on {host}:{port} ({exc}); try --port 0") from exc


def _connectable(host: str) -> str:
    """How a client on this machine reaches a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _run_example(example: Path, url: str, api_key: str) -> str:
    """Run ``example`` against the hub; the id of the run it made, once the API shows it."""
    launched = dt.datetime.now(dt.UTC)  # the example's run starts later, on this same clock
    env = {**os.environ, "AGENTOPS_HUB_URL": url, "AGENTOPS_API_KEY": api_key}
    try:
        finished = subprocess.run(
            [sys.executable, str(example)], env=env, timeout=EXAMPLE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DemoFailed(f"{example} did not finish within {EXAMPLE_TIMEOUT:.0f} s") from exc
    if finished.returncode != 0:
        raise DemoFailed(f"{example} failed (exit status {finished.returncode})")
    query: dict[str, str | int] = {"started_after": launched.isoformat(), "limit": 1}
    with httpx.Client(base_url=url, headers=_auth(api_key), timeout=5) as client:

        def finished_run() -> Any:
            items = client.get("/api/v1/runs", params=query).raise_for_status().json()["items"]
            return items[0]["id"] if items and items[0]["status"] != "running" else None

        run_id: str = _wait_until(finished_run, VISIBLE_TIMEOUT, "show the example's run")
    return run_id


def _describe(url: str, api_key: str, run_id: str) -> str:
    """The run as the API returns it: a header line and its span tree."""
    run = httpx.get(f"{url}/api/v1/runs/{run_id}", headers=_auth(api_key), timeout=5)
    body = run.raise_for_status().json()
    lines = [
        f"\nrun      {url}/api/v1/runs/{run_id}",
        f"  agent={body['agent']}  status={body['status']}  spans={body['span_count']}",
    ]

    def walk(spans: list[dict[str, Any]], depth: int) -> None:
        for span in spans:
            lines.append(f"{'  ' * depth}- {span['kind']:<5} {span['name']}  {span['status']}")
            walk(span["children"], depth + 1)

    walk(body["spans"], 2)
    return "\n".join(lines)


def _seed(url: str, api_key: str) -> str:
    """Fill the org through the API; what was made, as lines to print."""
    from agentops_server.demo_seed import seed_org

    with httpx.Client(base_url=url, headers=_auth(api_key), timeout=60) as client:
        made = seed_org(client)
    return (
        f"  {made.agents} agents, {made.runs} runs ({made.spans} spans) over 30 days, "
        f"{made.budgets} budgets, policy version {made.policy_version},\n"
        f"  an approval waiting ({url}/api/v1/approvals/{made.approval_id}), "
        f"{made.paused_agent} paused"
    )


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; :class:`DemoFailed` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except httpx.HTTPError as exc:
            result, last_error = None, f" (last error: {exc})"
        else:
            last_error = ""
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DemoFailed(f"the hub did not {what} within {timeout:.0f} s{last_error}")
        time.sleep(0.1)
