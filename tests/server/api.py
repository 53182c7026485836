"""Calling the hub's API in tests: clients of hubs with other settings, credentials, problem
answers and the audit log::

    with client_with(settings, rate_limit_login="3/minute") as client:
        response = client.get("/api/v1/runs", headers=bearer(key))
    assert_problem(response, 429, "rate_limited")
    [entry] = audit_entries(client, admin.headers, action="member.removed")
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from agentops_server import Settings, create_app

Client = TestClient[Litestar]


def bearer(credential: str, *, org: str | None = None) -> dict[str, str]:
    """``Authorization`` headers carrying ``credential`` (an access token, an API key, an
    external identity's token), with the org to act in (``X-AgentOps-Org``) if given."""
    headers = {"Authorization": f"Bearer {credential}"}
    if org is not None:
        headers["X-AgentOps-Org"] = org
    return headers


@contextmanager
def client_with(settings: Settings, **changes: Any) -> Iterator[Client]:
    """A client of a hub built from ``settings`` with ``changes`` (tight limits, another mail
    server, identity providers…)."""
    with TestClient(create_app(dataclasses.replace(settings, **changes))) as client:
        yield client


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with ``status`` and ``code``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    assert problem["status"] == status
    return problem


def audit_entries(client: Client, headers: dict[str, str], **filters: Any) -> list[dict[str, Any]]:
    """The org's audit log as ``GET /api/v1/audit`` answers it (newest first) with ``filters``."""
    response = client.get("/api/v1/audit", params=filters, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def moment(value: str) -> dt.datetime:
    """A time as the API writes it (ISO 8601)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
