"""The SDK across real processes: exit, restart, fork, and what importing it costs.

Each test runs small scripts with ``sys.executable`` in their own interpreter, configured only
through ``AGENTOPS_*`` environment variables, as an agent would be deployed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.sdk.fake_hub import FakeHub, free_port

API_KEY = "ak_test_processes"

RECORD_A_RUN = """
    import json
    import agentops_sdk as agentops

    agentops.init()
    ids = []

    @agentops.tool
    def search(query):
        ids.append(agentops.current_span().span_id)
        return [query]

    @agentops.agent
    def researcher(topic):
        ids.append(agentops.current_span().span_id)
        return search(topic) + search(topic + "!")

    researcher("cats")
    print(json.dumps(ids))
"""
"""Records one run of three spans, prints their ids and exits without flushing."""


def run_script(tmp_path: Path, source: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` in a fresh interpreter with ``AGENTOPS_<NAME>`` set from ``settings``.

    The spool is ``tmp_path / "spool"`` (the ``spool_dir`` fixture).
    """
    script = tmp_path / f"script_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(source))
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTOPS_")}
    env |= {"AGENTOPS_ENVIRONMENT": "test", "AGENTOPS_SPOOL_DIR": str(tmp_path / "spool")}
    env |= {f"AGENTOPS_{name.upper()}": value for name, value in settings.items()}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


# -- exit and restart -----------------------------------------------------------------------------


def test_events_are_flushed_to_the_hub_at_exit_without_an_explicit_flush(
    hub: FakeHub, tmp_path: Path
) -> None:
    result = run_script(tmp_path, RECORD_A_RUN, hub_url=hub.url, api_key=API_KEY)

    recorded = set(json.loads(result.stdout))
    assert len(recorded) == 3
    assert {span["id"] for span in hub.spans()} == recorded
    assert [e["type"] for e in hub.events.values()].count("run") == 1
    assert hub.received == 3 + 2, "three spans, and the run when it started and when it ended"


def test_events_are_written_to_the_jsonl_file_at_exit_without_an_explicit_flush(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"

    result = run_script(tmp_path, RECORD_A_RUN, exporter="jsonl", jsonl_path=str(path))

    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert {e["id"] for e in events if e["type"] == "span"} == set(json.loads(result.stdout))
    assert [e["type"] for e in events].count("run") == 2


def test_events_spooled_at_exit_with_the_hub_down_are_delivered_by_the_next_process(
    start_hub: Callable[..., FakeHub], tmp_path: Path, spool_files: Callable[[], list[Path]]
) -> None:
    port = free_port()
    # hub_wait 0: a first start would otherwise wait for the hub's controls (tested apart).
    settings = {"hub_url": f"http://127.0.0.1:{port}", "api_key": API_KEY, "hub_wait": "0"}

    started = time.monotonic()
    first = run_script(tmp_path, RECORD_A_RUN, **settings)
    elapsed = time.monotonic() - started

    assert elapsed < 3.0 + 3.0, "shutdown_timeout (3 s) plus the interpreter's own start and exit"
    (said,) = first.stderr.splitlines()  # one line, not also a retry that will never come
    assert "5 events were spooled for the next run" in said
    assert len(spool_files()) == 1

    hub = start_hub(port)
    run_script(tmp_path, "import agentops_sdk as agentops\nagentops.init()\n", **settings)

    recorded = set(json.loads(first.stdout))
    assert {span["id"] for span in hub.spans()} == recorded
    assert all(hub.received_ids[span_id] == 1 for span_id in recorded)
    assert hub.received == 3 + 2
    assert spool_files() == []


# -- fork --------------------------------------------------------------------------------------


FORK = """
    import json
    import os
    import agentops_sdk as agentops

    agentops.init()

    def record(who):
        with agentops.run(who, metadata={"pid": os.getpid()}) as run:
            with agentops.span("work") as work:
                return [run.span_id, work.span_id]

    parent_ids = record("parent")
    child = os.fork()
    if child == 0:
        print(json.dumps({"child": record("child")}), flush=True)
        agentops.shutdown()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    print(json.dumps({"parent": parent_ids, "status": status}), flush=True)
    agentops.shutdown()
"""
"""The parent records a run, forks while it is still queued, and the child records its own."""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_sends_its_own_events_and_never_the_parents(
    hub: FakeHub, tmp_path: Path
) -> None:
    result = run_script(tmp_path, FORK, hub_url=hub.url, api_key=API_KEY)

    said: dict[str, Any] = {}
    for line in result.stdout.splitlines():
        said |= json.loads(line)
    assert said["status"] == 0
    parent_ids, child_ids = set(said["parent"]), set(said["child"])
    assert {span["id"] for span in hub.spans()} == parent_ids | child_ids
    runs = {e["name"]: e for e in hub.events.values() if e["type"] == "run"}
    parent_pid, child_pid = runs["parent"]["metadata"]["pid"], runs["child"]["metadata"]["pid"]
    assert parent_pid != child_pid
    pid_of_run = {run["id"]: run["metadata"]["pid"] for run in runs.values()}

    sender_of: dict[str, set[int]] = {}
    for request in hub.requests:
        events = request["batch"]["events"]
        pids = {pid_of_run[e["id"] if e["type"] == "run" else e["run_id"]] for e in events}
        assert len(pids) == 1, "a batch holds the events of one process only"
        for event in events:
            sender_of.setdefault(event["id"], set()).update(pids)
    assert all(sender_of[i] == {parent_pid} for i in parent_ids)
    assert all(sender_of[i] == {child_pid} for i in child_ids)
    assert all(hub.received_ids[i] == 1 for i in parent_ids | child_ids)


MULTIPROCESSING_CHILD = """
    import json
    import multiprocessing
    import os
    import agentops_sdk as agentops

    agentops.init()

    def work(queue):
        with agentops.run("child", metadata={"pid": os.getpid()}) as run:
            queue.put(run.span_id)

    if __name__ == "__main__":
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=work, args=(queue,))
        child.start()
        child.join()
        print(json.dumps({"child": queue.get(timeout=5), "exitcode": child.exitcode}))
"""
"""A multiprocessing child records a run and returns: it leaves through ``os._exit``."""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multiprocessing_child_flushes_its_events_when_it_exits(
    hub: FakeHub, tmp_path: Path
) -> None:
    result = run_script(tmp_path, MULTIPROCESSING_CHILD, hub_url=hub.url, api_key=API_KEY)

    said = json.loads(result.stdout)
    assert said["exitcode"] == 0
    assert {span["id"] for span in hub.spans()} == {said["child"]}


# -- import cost ---------------------------------------------------------------------------------

FORBIDDEN_AT_IMPORT = (
    "litestar",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "agentops_server",
    "pydantic",
    "httpx",
    "tenacity",
)

LOADED_AFTER = f"""
import json, sys
import agentops_sdk
after_import = sorted(m for m in sys.modules if m.partition(".")[0] in {FORBIDDEN_AT_IMPORT!r})
agentops_sdk.init(hub_url="http://127.0.0.1:9", spool=False)  # nothing recorded: no export yet
after_init = sorted(m for m in sys.modules if m.partition(".")[0] in {FORBIDDEN_AT_IMPORT!r})
print(json.dumps({{"import": after_import, "init": after_init}}))
"""


def test_importing_the_sdk_loads_no_server_or_heavy_package(tmp_path: Path) -> None:
    # How long the import takes is measured by benchmarks/sdk_overhead.py, not asserted here.
    loaded = json.loads(run_script(tmp_path, LOADED_AFTER).stdout)
    assert loaded["import"] == []
    # httpx and tenacity wait for the first export, on the worker thread.
    assert loaded["init"] == []
