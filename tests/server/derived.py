"""A hub whose derived work the test can reach: hand it notices and wait until they are done::

with hub_with(settings, webhooks_allow_private=True) as hub:
    hub.enqueue(CONTROL_CHANGED, control_notice(org.org_id, scope={"kind": "org"}))
    hub.settle()
    hub.client.get("/api/v1/notifications", headers=owner.headers)
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner
from tests.server.api import Client


@dataclasses.dataclass
class Hub:
    """A test client of a hub and the hub's derived-work runner."""

    client: Client
    runner: InProcessRunner

    def enqueue(self, task_name: str, payload: Mapping[str, Any]) -> None:
        """Hand a notice to the hub's runner, on the hub's event loop."""
        self.client.blocking_portal.call(self.runner.enqueue, task_name, payload)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every queued task (retries included) is done; fail after ``timeout``."""

        async def idle() -> None:
            await asyncio.wait_for(self.runner.idle(), timeout)

        self.client.blocking_portal.call(idle)


@contextmanager
def hub_with(settings: Settings, **changes: Any) -> Iterator[Hub]:
    """A hub built from ``settings`` with ``changes``, running its own derived-work runner."""
    runner = InProcessRunner(backoff=0.01)
    app = create_app(dataclasses.replace(settings, **changes), derived_work=runner)
    with TestClient(app) as client:
        yield Hub(client, runner)


def control_notice(
    org_id: uuid.UUID,
    *,
    action: str = "kill",
    scope: Any = None,
    reason: str = "runaway spend",
    actor: str = "olga@acme.example",
) -> dict[str, Any]:
    """A ``governance.control_changed`` notice as the controls service hands it over."""
    return {
        "org_id": str(org_id),
        "control_ids": [str(uuid.uuid4())],
        "action": action,
        "scope": scope if scope is not None else {"kind": "org", "value": None},
        "reason": reason,
        "actor": actor,
    }
