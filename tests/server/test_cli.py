"""``agentops-hub`` commands, in process (click's runner), on SQLite and PostgreSQL.

The commands as real processes (``serve``, ``demo``) are in ``test_e2e.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from click.testing import CliRunner
from litestar.testing import TestClient

from agentops_sdk.contract.controls import ControlSet
from agentops_server import Settings, create_app
from agentops_server.cli import main
from agentops_server.db.engine import create_db_engine
from agentops_server.db.migrate import is_current
from agentops_server.demo import demo_key
from agentops_server.security.api_keys import parse_key
from tests.server.database import db_id, rows


def test_db_upgrade_brings_an_empty_database_to_the_newest_migration(database_url: str) -> None:
    runner = CliRunner()

    first = runner.invoke(main, ["db", "upgrade", "--database-url", database_url])
    again = runner.invoke(main, ["db", "upgrade", "--database-url", database_url])

    assert (first.exit_code, first.output) == (0, "database at head\n")
    assert again.exit_code == 0, again.output
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            assert is_current(connection)
    finally:
        engine.dispose()


def test_bootstrap_json_prints_the_org_and_a_key_that_works(database_url: str) -> None:
    result = CliRunner().invoke(
        main, ["bootstrap", "--org", "acme", "--json", "--database-url", database_url]
    )

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"org_id", "api_key"}
    parts = parse_key(printed["api_key"])
    assert parts is not None
    assert parts.org_id == uuid.UUID(printed["org_id"])
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        response = client.get(
            "/api/v1/runs", headers={"Authorization": f"Bearer {printed['api_key']}"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


def test_bootstrap_with_an_owner_records_the_org_the_owner_and_the_key_in_the_audit_log(
    database_url: str,
) -> None:
    result = CliRunner().invoke(
        main,
        ["bootstrap", "--org", "acme", "--json", "--owner", "olga@acme.example"],
        env={"AGENTOPS_OWNER_PASSWORD": "Tr0ub4dor&3-horse", "AGENTOPS_DATABASE_URL": database_url},
    )

    assert result.exit_code == 0, result.output
    org_id = uuid.UUID(json.loads(result.stdout)["org_id"])
    logged = rows(
        database_url,
        "SELECT action, actor_type FROM audit_log WHERE org_id = :org ORDER BY action",
        org=db_id(database_url, org_id),
    )
    assert [tuple(row) for row in logged] == [
        ("api_key.created", "system"),
        ("member.added", "system"),
        ("org.created", "system"),
    ]


def test_bootstrap_twice_with_the_same_org_name_fails_clearly(database_url: str) -> None:
    runner = CliRunner()
    command = ["bootstrap", "--org", "acme", "--json", "--database-url", database_url]

    first = runner.invoke(main, command)
    second = runner.invoke(main, command)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 1
    assert "an org named 'acme' (slug 'acme') already exists" in second.output
    assert "ak_" not in second.output


def test_demo_reuses_its_org_and_makes_a_new_key_each_time(database_url: str) -> None:
    first = demo_key(database_url, "demo")
    second = demo_key(database_url, "demo")

    assert first.org_id == second.org_id
    assert first.key != second.key
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        for issued in (first, second):
            response = client.get(
                "/api/v1/agents", headers={"Authorization": f"Bearer {issued.key}"}
            )
            assert response.status_code == 200, response.text


def test_demo_refuses_an_example_that_does_not_exist() -> None:
    result = CliRunner().invoke(main, ["demo", "--example", "no/such/example.py", "--once"])

    assert result.exit_code == 2
    assert "no/such/example.py" in result.output


def test_the_cli_runs_as_python_dash_m_agentops_server() -> None:
    # The README uses this form: pip's script directory is not always on PATH (pyenv shims).
    finished = subprocess.run(
        [sys.executable, "-m", "agentops_server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr
    assert "Usage: agentops-hub" in finished.stdout
    for command in ("serve", "db", "bootstrap", "demo"):
        assert command in finished.stdout


def test_controls_kill_list_and_resume_work_straight_on_the_database_audited_as_the_cli(
    database_url: str,
) -> None:
    runner = CliRunner(env={"AGENTOPS_DATABASE_URL": database_url})
    made = runner.invoke(main, ["bootstrap", "--org", "acme", "--json"])
    key = json.loads(made.stdout)["api_key"]
    org = ["--org", "acme"]

    killed = runner.invoke(main, ["controls", "kill", *org, "--agent", "triage", "--reason", "x"])
    paused = runner.invoke(
        main,
        ["controls", "pause", *org, "--environment", "prod", "--duration", "60", "--reason", "y"],
    )
    listed = runner.invoke(main, ["controls", "list", *org, "--json"])
    resumed = runner.invoke(
        main, ["controls", "resume", *org, "--agent", "triage", "--reason", "z"]
    )
    after = runner.invoke(main, ["controls", "list", *org])

    for result in (killed, paused, listed, resumed, after):
        assert result.exit_code == 0, result.output
    assert killed.output.startswith("kill: agent triage (control ")
    served = ControlSet.model_validate_json(listed.stdout)
    assert served.version == 2
    assert [(c.scope.kind, c.scope.value, c.state, c.actor) for c in served.controls] == [
        ("agent", "triage", "killed", "cli"),
        ("environment", "prod", "paused", "cli"),
    ]
    assert served.controls[1].expires_at is not None
    assert after.output.splitlines()[0] == "version 3"
    assert "active  agent triage  by cli: z" in after.output
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        response = client.get("/api/v1/controls", headers={"Authorization": f"Bearer {key}"})
    assert response.headers["etag"] == f'"{served.org_id}-3"'
    logged = rows(
        database_url,
        "SELECT action, actor_type FROM audit_log WHERE org_id = :org AND action LIKE 'control%'",
        org=db_id(database_url, served.org_id),
    )
    assert sorted(tuple(row) for row in logged) == [("control.set", "system")] * 3


def test_controls_refuse_an_unknown_org_and_two_scopes(database_url: str) -> None:
    runner = CliRunner(env={"AGENTOPS_DATABASE_URL": database_url})
    runner.invoke(main, ["bootstrap", "--org", "acme"])

    unknown = runner.invoke(main, ["controls", "kill", "--org", "nope", "--reason", "x"])
    both = runner.invoke(
        main, ["controls", "kill", "--org", "acme", "--agent", "a", "--tag", "b", "--reason", "x"]
    )
    blank = runner.invoke(main, ["controls", "kill", "--org", "acme", "--reason", " "])

    assert (unknown.exit_code, both.exit_code, blank.exit_code) == (1, 2, 1)
    assert "no org has the slug 'nope'" in unknown.output
    assert "at most one of" in both.output
    assert "Say why" in blank.output


def test_a_control_set_by_the_cli_is_handed_to_the_queue_to_notify_members(
    database_url: str,
) -> None:
    queue = f"test-{uuid.uuid4()}"
    runner = CliRunner(
        env={
            "AGENTOPS_DATABASE_URL": database_url,
            "AGENTOPS_REDIS_URL": "redis://127.0.0.1:6379/0",
            "AGENTOPS_QUEUE_NAME": queue,
        }
    )
    assert runner.invoke(main, ["bootstrap", "--org", "acme"]).exit_code == 0

    killed = runner.invoke(main, ["controls", "kill", "--org", "acme", "--reason", "incident 7"])

    assert killed.exit_code == 0, killed.output
    [(notice, payload)] = rows(database_url, "SELECT notice, payload FROM derived_work")
    assert notice == "governance.control_changed"
    sent = payload if isinstance(payload, dict) else json.loads(payload)
    assert (sent["action"], sent["reason"], sent["actor"]) == ("kill", "incident 7", "cli")


def test_without_a_queue_the_cli_says_that_nobody_is_notified(database_url: str) -> None:
    runner = CliRunner(env={"AGENTOPS_DATABASE_URL": database_url})
    assert runner.invoke(main, ["bootstrap", "--org", "acme"]).exit_code == 0

    paused = runner.invoke(main, ["controls", "pause", "--org", "acme", "--reason", "drill"])

    assert paused.exit_code == 0, paused.output
    assert "members are not notified" in paused.stderr
