from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sdk.fake_hub import FakeHub

# The budget tests drive the real openai client and LangChain's fake models, priced with the
# pricing extra: in the sdk_minimal session (base dependencies only) they cannot be imported.
_EXTRAS = ("openai", "langchain_core", "genai_prices")
collect_ignore = (
    ["test_budgets.py", "test_budgets_concurrency.py", "test_policy_costs.py"]
    if any(importlib.util.find_spec(name) is None for name in _EXTRAS)
    else []
)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A fake hub on a free port of 127.0.0.1, stopped after the test."""
    server = FakeHub().start()
    yield server
    server.stop()


@pytest.fixture
def start_hub() -> Iterator[Callable[..., FakeHub]]:
    """``start_hub(port=0, api_key=None)``: a fake hub on ``port`` (free if 0), stopped after."""
    hubs: list[FakeHub] = []

    def start(port: int = 0, api_key: str | None = None) -> FakeHub:
        hubs.append(FakeHub(port, api_key=api_key).start())
        return hubs[-1]

    yield start
    for server in hubs:
        server.stop()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """Where a test's SDK spools batches (``spool_dir`` / ``AGENTOPS_SPOOL_DIR``)."""
    return tmp_path / "spool"


@pytest.fixture
def spool_files(spool_dir: Path) -> Callable[[], list[Path]]:
    """``spool_files()``: every file now in the spool (batches, claims, temporary files)."""
    return lambda: sorted(path for path in spool_dir.rglob("*") if path.is_file())
