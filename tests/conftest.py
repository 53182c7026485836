"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.client import Client


@pytest.fixture(autouse=True)
def _integrations_as_they_were() -> Iterator[None]:
    """Disable after each test the integrations it enabled (an ``init()`` with the default
    ``integrations=None`` enables every installed one): patched frameworks must not leak into
    the next test a pytest-xdist worker runs."""
    before = set(integrations.enabled())
    yield
    for name in set(integrations.enabled()) - before:
        integrations.disable(name)


@pytest.fixture
def start_sdk() -> Iterator[Callable[..., Client]]:
    """``start_sdk(**options)``: ``init()`` with test defaults, ignoring the environment.

    Defaults: environment "test", no spool, a 50 ms flush interval. Shut down after the test.
    """
    clients: list[Client] = []

    def start(**options: Any) -> Client:
        settings: dict[str, Any] = {"environment": "test", "flush_interval": 0.05, "spool": False}
        client = agentops.init(agentops.Options(**(settings | options)))
        assert client is not None
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.shutdown(5.0)
