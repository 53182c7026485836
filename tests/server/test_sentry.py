"""Sentry: with ``SENTRY_DSN`` set, an error in a route reaches a Sentry endpoint (a local HTTP
server standing in for sentry.io) without the caller's credentials, nor the values a failed
statement was given; without it, Sentry stays off.

Sentry's client is process-wide state, so the hub that reports runs in a process of its own.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk

from agentops_server import Settings
from agentops_server.observability import configure_sentry
from tests.server.conftest import make_org

DEADLINE = 30.0

FAILING_HUB = """
import sentry_sdk
from litestar import get
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server import create_app


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("boom from a route")


@get("/failed-statement")
async def failed_statement(db_session: AsyncSession) -> None:
    await db_session.execute(
        text("SELECT name FROM nowhere WHERE name = :name"), {"name": "bound-canary"}
    )


app = create_app()  # settings from the environment: SENTRY_DSN, AGENTOPS_DATABASE_URL
app.register(boom)
app.register(failed_statement)
with TestClient(app) as client:
    response = client.get(PATH, headers={"Authorization": AUTHORIZATION})
    assert response.status_code == 500, response.text
assert sentry_sdk.flush(timeout=20) is not False
"""


class SentryEndpoint(ThreadingHTTPServer):
    """Receives Sentry envelopes over HTTP, as sentry.io would; keeps each body."""

    def __init__(self) -> None:
        self.envelopes: queue.Queue[bytes] = queue.Queue()
        super().__init__(("127.0.0.1", 0), _EnvelopeHandler)

    @property
    def dsn(self) -> str:
        """A DSN for project 1 of this endpoint."""
        return f"http://public@127.0.0.1:{self.server_address[1]}/1"

    def next_event(self) -> tuple[dict[str, Any], bytes]:
        """The next envelope holding an event (not a session update), and its raw body."""
        while True:
            try:
                body = self.envelopes.get(timeout=DEADLINE)
            except queue.Empty:
                pytest.fail(f"no Sentry event arrived within {DEADLINE:.0f} s")
            for line in body.splitlines():
                item = json.loads(line)
                if "exception" in item:
                    return item, body


class _EnvelopeHandler(BaseHTTPRequestHandler):
    server: SentryEndpoint

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.put(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the envelopes, not the access log."""


@pytest.fixture
def sentry_endpoint() -> Iterator[SentryEndpoint]:
    endpoint = SentryEndpoint()
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def test_an_error_in_a_route_reaches_sentry_without_the_callers_credentials(
    sentry_endpoint: SentryEndpoint, migrated_url: str
) -> None:
    key = make_org(migrated_url, "reported").key

    run_failing_hub(sentry_endpoint, migrated_url, key, "/boom?token=query-secret")

    event, envelope = sentry_endpoint.next_event()
    [exception] = event["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("RuntimeError", "boom from a route")
    assert event["request"]["url"].endswith("/boom")
    assert event["request"]["headers"]["authorization"] == "[Filtered]"
    assert "query-secret" not in event["request"].get("query_string", "")
    assert key.encode() not in envelope
    assert b"query-secret" not in envelope


def test_a_failed_statement_reaches_sentry_without_the_values_it_was_given(
    sentry_endpoint: SentryEndpoint, migrated_url: str
) -> None:
    key = make_org(migrated_url, "reported").key

    run_failing_hub(sentry_endpoint, migrated_url, key, "/failed-statement")

    event, envelope = sentry_endpoint.next_event()
    reported = [exception["value"] for exception in event["exception"]["values"]]
    assert any("nowhere" in value and "SQL parameters hidden" in value for value in reported)
    assert b"bound-canary" not in envelope


def test_without_a_dsn_sentry_stays_off() -> None:
    configure_sentry(Settings(sentry_dsn=None))

    assert not sentry_sdk.is_initialized()


def run_failing_hub(endpoint: SentryEndpoint, database_url: str, key: str, path: str) -> None:
    """Run a hub reporting to ``endpoint`` in a process of its own, and have ``key`` call
    ``path`` on it (a route that fails)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AGENTOPS_")}
    env |= {"SENTRY_DSN": endpoint.dsn, "AGENTOPS_DATABASE_URL": database_url}
    program = f"AUTHORIZATION = {f'Bearer {key}'!r}\nPATH = {path!r}\n{FAILING_HUB}"

    failing_hub = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=2 * DEADLINE,
        check=False,
    )

    assert failing_hub.returncode == 0, failing_hub.stderr
