"""Structured logs, read from a real ``agentops-hub serve`` process: every stderr line is one JSON
object, each request has an id (echoed in ``X-Request-ID``) and one ``request`` line naming its
org and key, and no secret (API key, secret query values, a failed statement's parameters) ever
reaches the log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentops_server import Settings
from agentops_server.db.migrate import upgrade
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import assert_problem, bearer, client_with
from tests.server.conftest import make_org
from tests.server.database import execute
from tests.server.principals import PASSWORD
from tests.server.servers import TIMEOUT, HubOutput, hub_process


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, HubOutput, IssuedKey]]:
    """One served hub on SQLite for this module's tests, and an org's API key."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('logging') / 'hub.db'}"
    upgrade(database_url)
    org = make_org(database_url, "loggers")
    environment = {"AGENTOPS_DATABASE_URL": database_url}
    with hub_process("--no-migrate", environment=environment) as served:
        yield served.url, served.log, org


def test_a_request_is_logged_as_one_json_line_with_its_id_org_and_key(
    hub: tuple[str, HubOutput, IssuedKey],
) -> None:
    url, output, org = hub

    response = httpx.get(
        f"{url}/api/v1/runs",
        headers=bearer(org.key) | {"X-Request-ID": "req-logged-1"},
    )

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-logged-1"
    line = access_line(output, "req-logged-1")
    assert line["event"] == "request"
    assert line["logger"] == "agentops_server.access"
    assert line["level"] == "info"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/runs", 200)
    assert isinstance(line["duration_ms"], float)
    assert (line["org_id"], line["key_id"]) == (str(org.org_id), str(org.key_id))
    assert "timestamp" in line


def test_every_line_the_process_writes_is_json_uvicorns_included(
    hub: tuple[str, HubOutput, IssuedKey],
) -> None:
    url, output, _ = hub
    httpx.get(f"{url}/health", headers={"X-Request-ID": "req-health"})
    access_line(output, "req-health")

    lines = [json.loads(line) for line in output.text().splitlines()]

    assert any(
        line["logger"].startswith("uvicorn") and "Uvicorn running on" in line["event"]
        for line in lines
    )


def test_a_refused_key_is_logged_with_its_status_and_never_its_value(
    hub: tuple[str, HubOutput, IssuedKey],
) -> None:
    url, output, org = hub
    forged = org.key[:-6] + "forged"

    response = httpx.get(
        f"{url}/api/v1/runs",
        headers=bearer(forged) | {"X-Request-ID": "req-forged"},
    )

    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "req-forged"
    line = access_line(output, "req-forged")
    assert line["status"] == 401
    assert "org_id" not in line
    assert forged not in output.text()


def test_secrets_in_the_query_and_headers_never_reach_the_log(
    hub: tuple[str, HubOutput, IssuedKey],
) -> None:
    url, output, org = hub

    httpx.get(
        f"{url}/api/v1/runs",
        params={"limit": "5", "token": "tok-in-query", "api_key": "key-in-query"},
        headers=bearer(org.key) | {"X-Request-ID": "req-query"},
    )

    line = access_line(output, "req-query")
    assert "limit=5" in line["query"]
    assert "token=%5Bredacted%5D" in line["query"]
    text = output.text()
    for secret in (org.key, "tok-in-query", "key-in-query"):
        assert secret not in text


def test_a_failed_statement_is_logged_without_the_values_it_was_given(
    settings: Settings, migrated_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(migrated_url, "ALTER TABLE users RENAME TO users_elsewhere")  # the next query fails
    canary = f"canary-{uuid.uuid4().hex}@example.com"

    with client_with(settings) as client:
        response = client.post("/api/v1/auth/login", json={"email": canary, "password": PASSWORD})

    assert_problem(response, 500, "internal_error")
    log = capsys.readouterr().err
    assert "unexpected error" in log
    assert "SQL parameters hidden" in log  # the statement is there, what was bound is not
    assert canary not in log


def test_a_request_id_that_is_not_sane_is_replaced(
    hub: tuple[str, HubOutput, IssuedKey],
) -> None:
    url, output, _ = hub

    response = httpx.get(f"{url}/health", headers={"X-Request-ID": "two words; and more"})

    request_id = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert access_line(output, request_id)["path"] == "/health"


def test_console_format_writes_readable_lines_not_json(tmp_path: Path) -> None:
    program = (
        "import logging\n"
        "from agentops_server import Settings\n"
        "from agentops_server.observability import configure_logging\n"
        "configure_logging(Settings(log_format='console', log_level='debug'))\n"
        "logging.getLogger('agentops_server').debug('hello %s', 'console')\n"
    )

    finished = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
        cwd=tmp_path,
    )

    [line] = finished.stderr.splitlines()
    assert "hello console" in line
    assert "agentops_server" in line
    assert not line.startswith("{")


def access_line(output: HubOutput, request_id: str) -> dict[str, Any]:
    """The parsed ``request`` line of the request ``request_id``."""
    found = output.wait_for(
        lambda line: f'"request_id": "{request_id}"' in line and '"event": "request"' in line,
        f"the access line of {request_id}",
    )
    line: dict[str, Any] = json.loads(found)
    return line
