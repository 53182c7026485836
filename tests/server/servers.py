"""Servers on free ports of 127.0.0.1 for tests that need real HTTP: an ASGI app (the hub, a
local identity provider) served by uvicorn in a thread of the test process, and the hub as a
real ``agentops-hub serve`` process with its log::

    with serving(app) as url:                       # the ``hub_url`` fixture does this
        httpx.get(f"{url}/health")

    with hub_process("--no-migrate", environment={"AGENTOPS_DATABASE_URL": url}) as hub:
        httpx.get(f"{hub.url}/health", headers={"X-Request-ID": "req-1"})
        hub.log.wait_for(lambda line: "req-1" in line, "the request's line")
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import uvicorn

HUB = Path(sys.executable).with_name("agentops-hub")
"""The installed console script."""
TIMEOUT = 60.0
"""How long a hub process may take to start, or to write a line the test waits for."""

T = TypeVar("T")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a thread; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # as `agentops-hub serve`: the app decides whom to believe
        )
    )
    thread = threading.Thread(target=server.run, name="hub", daemon=True)
    thread.start()
    try:
        if not wait_until(lambda: server.started or not thread.is_alive(), 20):
            raise TimeoutError("uvicorn did not start within 20 s")
        if not server.started:
            raise RuntimeError("uvicorn failed to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def wait_until(condition: Callable[[], T], timeout: float, every: float = 0.02) -> T | None:
    """Check ``condition`` until it gives something true or ``timeout`` passes; what it gave
    last (false at the deadline)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() >= deadline:
            return result
        time.sleep(every)
    return result


class HubOutput:
    """What a hub process writes to stderr, line by line as it arrives."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.ended = False
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def wait_for(self, wanted: Callable[[str], bool], what: str) -> str:
        """The first line ``wanted`` accepts; fails if none arrives within ``TIMEOUT``."""
        deadline = time.monotonic() + TIMEOUT
        with self._arrived:
            while True:
                if found := next((line for line in self.lines if wanted(line)), None):
                    return found
                remaining = deadline - time.monotonic()
                if self.ended or remaining <= 0:
                    pytest.fail(f"no line with {what} from the hub:\n{self.text()}")
                self._arrived.wait(remaining)

    def text(self) -> str:
        """Everything written so far."""
        with self._arrived:
            return "".join(self.lines)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._arrived:
                self.lines.append(line)
                self._arrived.notify_all()
        with self._arrived:
            self.ended = True
            self._arrived.notify_all()


@dataclasses.dataclass(frozen=True)
class HubProcess:
    """A running ``agentops-hub serve``: where it listens, and what it writes to stderr."""

    url: str
    log: HubOutput
    process: subprocess.Popen[str]


@contextmanager
def hub_process(
    *options: str, environment: Mapping[str, str] | None = None, port: int = 0
) -> Iterator[HubProcess]:
    """``agentops-hub serve`` with ``options`` on ``port`` (default: a free one), in a clean
    environment (no ``AGENTOPS_*`` or ``SENTRY_DSN`` from outside) with ``environment`` added,
    once it listens; stopped afterwards (if the test has not killed it)."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AGENTOPS_") and name != "SENTRY_DSN"
    }
    process = subprocess.Popen(
        [str(HUB), "serve", "--port", str(port), *options],
        env={**clean, **(environment or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    output = HubOutput(process.stderr)
    try:
        running = output.wait_for(lambda line: "Uvicorn running on" in line, "uvicorn listening")
        match = re.search(r"Uvicorn running on (http://[^\s\"]+)", running)
        assert match, running
        yield HubProcess(match[1], output, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
