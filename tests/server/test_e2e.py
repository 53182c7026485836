"""End to end, as real processes: ``agentops-hub serve`` and ``demo``, ``bootstrap``, and the SDK's
``examples/quickstart.py`` shipping its run over HTTP; read back through the API. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agentops_server.db.engine import create_db_engine
from agentops_server.db.models import Org, Run

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart.py"
HUB = Path(sys.executable).with_name("agentops-hub")
TIMEOUT = 60.0


@pytest.fixture
def sdk_env(tmp_path: Path) -> dict[str, str]:
    """The environment for SDK processes: a spool of their own, no AGENTOPS_* from outside."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTOPS_")}
    env["AGENTOPS_SPOOL_DIR"] = str(tmp_path / "spool")
    return env


def test_quickstart_run_reaches_a_served_hub_and_reads_back_as_a_tree(
    database_url: str, sdk_env: dict[str, str], tmp_path: Path
) -> None:
    with serving(database_url) as url:
        key = bootstrap(database_url, "e2e")
        quickstart = subprocess.run(
            [sys.executable, str(QUICKSTART)],
            env={**sdk_env, "AGENTOPS_HUB_URL": url, "AGENTOPS_API_KEY": key},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert quickstart.returncode == 0, quickstart.stderr
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as api:
            run = wait_for(lambda: finished_run(api), "the quickstart's run to show")
            detail = api.get(f"/api/v1/runs/{run['id']}").json()
            agents = api.get("/api/v1/agents").json()["items"]

    assert (run["agent"], run["status"], run["environment"]) == ("weather-assistant", "ok", "dev")
    assert (run["span_count"], run["error_count"]) == (6, 0)
    assert detail["input"] == {"question": "What's the weather in Paris and Oslo?"}
    [root] = detail["spans"]
    assert (root["kind"], root["name"], root["parent_id"]) == ("agent", "weather-assistant", None)
    assert [(span["kind"], span["name"]) for span in root["children"]] == [
        ("step", "plan"),
        ("tool", "get_weather"),
        ("tool", "convert_temperature"),
        ("tool", "get_weather"),
        ("tool", "convert_temperature"),
    ]
    weather = root["children"][1]
    assert (weather["input"], weather["output"]) == ({"city": "paris"}, "18°C, light rain")
    assert weather["parent_id"] == root["id"]
    assert weather["duration_ms"] is not None
    assert all(span["children"] == [] for span in root["children"])
    assert [(agent["name"], agent["run_count"]) for agent in agents] == [("weather-assistant", 1)]


def test_demo_once_serves_a_hub_runs_the_quickstart_and_exits(
    database_url: str, sdk_env: dict[str, str]
) -> None:
    runs = [demo_once(database_url, sdk_env) for _ in range(2)]

    for finished in runs:
        assert finished.returncode == 0, finished.stdout + finished.stderr
    first, second = (finished.stdout for finished in runs)
    for shown in (first, second):
        assert re.search(r"AgentOps Hub demo at http://127\.0\.0\.1:\d+", shown)
        assert "agent=weather-assistant  status=ok  spans=6" in shown
        assert "- tool  get_weather  ok" in shown
    org_ids = {printed(r"org +demo \(([0-9a-f-]+)\)", shown) for shown in (first, second)}
    keys = {printed(r"api key +(ak_\S+)", shown) for shown in (first, second)}
    assert len(org_ids) == 1  # the org is reused
    assert len(keys) == 2  # with a new key each time
    engine = create_db_engine(database_url)
    try:
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(Org)) == 1
            assert session.scalar(select(func.count()).select_from(Run)) == 2
    finally:
        engine.dispose()


def test_demo_once_fails_when_its_example_fails(sdk_env: dict[str, str], tmp_path: Path) -> None:
    example = tmp_path / "broken_agent.py"
    example.write_text("raise SystemExit(3)\n")
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"

    finished = demo_once(database_url, sdk_env, "--example", str(example))

    assert finished.returncode == 1
    assert f"{example} failed (exit status 3)" in finished.stderr


# Processes


@contextmanager
def serving(database_url: str) -> Iterator[str]:
    """``agentops-hub serve`` on a free port; its base URL once it listens."""
    process = subprocess.Popen(
        [str(HUB), "serve", "--port", "0", "--database-url", database_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        yield _listening_url(lines)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening_url(lines: queue.Queue[str | None]) -> str:
    """The URL from uvicorn's "running on" line, read before the deadline."""
    deadline = time.monotonic() + TIMEOUT
    seen: list[str] = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            pytest.fail("agentops-hub serve exited:\n" + "".join(seen))
        seen.append(line)
        if match := re.search(r"Uvicorn running on (http://\S+)", line):
            return match[1]
    pytest.fail(f"agentops-hub serve did not listen within {TIMEOUT:.0f} s:\n" + "".join(seen))


def bootstrap(database_url: str, org_name: str) -> str:
    """``agentops-hub bootstrap --json`` as a process; the API key it printed."""
    finished = subprocess.run(
        [str(HUB), "bootstrap", "--org", org_name, "--json", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    key: str = json.loads(finished.stdout)["api_key"]
    return key


def demo_once(
    database_url: str, env: dict[str, str], *options: str
) -> subprocess.CompletedProcess[str]:
    """``agentops-hub demo --once`` from the repository root, as the README has it."""
    return subprocess.run(
        [str(HUB), "demo", "--once", "--port", "0", "--database-url", database_url, *options],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=2 * TIMEOUT,
        check=False,
    )


def printed(pattern: str, output: str) -> str:
    """The first group of ``pattern`` in ``output``."""
    match = re.search(pattern, output)
    assert match, f"{pattern!r} not in:\n{output}"
    return match[1]


def finished_run(api: httpx.Client) -> dict[str, Any] | None:
    """The newest run, once it has ended."""
    items = api.get("/api/v1/runs").raise_for_status().json()["items"]
    return items[0] if items and items[0]["status"] != "running" else None


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return result
