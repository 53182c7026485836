"""Hub processes for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.server.servers import HubProcess, hub_process


@contextmanager
def hub(database_url: str, port: int = 0, **settings: str) -> Iterator[HubProcess]:
    """A hub process on ``database_url`` with ``AGENTOPS_<SETTING>`` variables."""
    environment = {f"AGENTOPS_{name.upper()}": value for name, value in settings.items()}
    with hub_process(
        "--database-url", database_url, "--no-migrate", environment=environment, port=port
    ) as process:
        yield process
