"""End to end, as real processes: ``agentops-hub serve`` and ``demo``, ``bootstrap``, and the SDK's
``examples/quickstart.py`` shipping its run over HTTP; read back through the API. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentops_server.db.models import Org, Run
from tests.server.api import bearer
from tests.server.database import count
from tests.server.servers import HUB, TIMEOUT, hub_process, wait_until

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart.py"


@pytest.fixture
def sdk_env(tmp_path: Path) -> dict[str, str]:
    """The environment for SDK processes: a spool of their own, no AGENTOPS_* from outside."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTOPS_")}
    env["AGENTOPS_SPOOL_DIR"] = str(tmp_path / "spool")
    return env


def test_quickstart_run_reaches_a_served_hub_and_reads_back_as_a_tree(
    database_url: str, sdk_env: dict[str, str], tmp_path: Path
) -> None:
    with hub_process("--database-url", database_url) as hub:
        key = bootstrap(database_url, "e2e")
        quickstart = subprocess.run(
            [sys.executable, str(QUICKSTART)],
            env={**sdk_env, "AGENTOPS_HUB_URL": hub.url, "AGENTOPS_API_KEY": key},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert quickstart.returncode == 0, quickstart.stderr
        with httpx.Client(base_url=hub.url, headers=bearer(key)) as api:
            run = wait_until(lambda: finished_run(api), 15, every=0.1)
            assert run, "the quickstart's run did not show within 15 s"
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
        assert re.search(r"sign in +http://127\.0\.0\.1:\d+/sign-in/link\?token=\S+", shown)
    org_ids = {printed(r"org +demo \(([0-9a-f-]+)\)", shown) for shown in (first, second)}
    keys = {printed(r"api key +(ak_\S+)", shown) for shown in (first, second)}
    assert len(org_ids) == 1  # the org is reused
    assert len(keys) == 2  # with a new key each time
    assert count(database_url, Org) == 1
    assert count(database_url, Run) == 2


def test_demo_once_fails_when_its_example_fails(sdk_env: dict[str, str], tmp_path: Path) -> None:
    example = tmp_path / "broken_agent.py"
    example.write_text("raise SystemExit(3)\n")
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"

    finished = demo_once(database_url, sdk_env, "--example", str(example))

    assert finished.returncode == 1
    assert f"{example} failed (exit status 3)" in finished.stderr


def test_demo_seed_fills_the_org_with_a_month_of_data(
    sdk_env: dict[str, str], tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'demo.db'}"

    finished = demo_once(database_url, sdk_env, "--seed")

    assert finished.returncode == 0, finished.stdout + finished.stderr
    made = re.search(r"(\d+) agents, (\d+) runs \((\d+) spans\) over 30 days", finished.stdout)
    assert made is not None, finished.stdout
    agents, runs, _ = (int(group) for group in made.groups())
    assert agents == 6
    assert count(database_url, Run) == runs + 1, "the seeded runs and the quickstart's"
    assert "an approval waiting" in finished.stdout


# Processes


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
