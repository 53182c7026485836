"""Requests that stages make to the hub off the call path (approvals, budget leases).

Each is made from a helper thread, never from the caller's, with a short timeout and a few
retries with backoff for what may pass (a connection failure, a timeout, a ``5xx``, ``429``); any
other answer is final. httpx and pydantic are imported by the first request.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, TypeVar

from agentops_sdk._version import __version__
from agentops_sdk.enforcement.link import Backoff
from agentops_sdk.exporters import SDK_NAME
from agentops_sdk.hub_http import hub_client

if TYPE_CHECKING:
    import httpx
    from pydantic import BaseModel

__all__ = ["HubRefused", "HubRequests", "HubUnreachable", "holder_name"]

_RETRIED: Final = frozenset({408, 425, 429, 500, 502, 503, 504})

Answer = TypeVar("Answer", bound="BaseModel")


class HubUnreachable(Exception):
    """The hub could not be reached (or kept failing) after every retry."""


class HubRefused(Exception):
    """The hub answered with an error that retrying will not change."""

    def __init__(self, status: int, code: str | None, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.code = code


class HubRequests:
    """JSON requests to ``hub_url`` with ``api_key``, answered by a pydantic model.

    Thread-safe: one httpx client, made on first use, serves every request.
    """

    def __init__(
        self,
        hub_url: str,
        api_key: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        retry_delay: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = hub_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay
        self._api_key = api_key
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def request(self, method: str, url: str, body: str | None, answer: type[Answer]) -> Answer:
        """``method`` ``url`` with the JSON ``body``; the answer read as ``answer``.

        Raises :class:`HubRefused` for an error answer retrying will not change (or an
        unreadable one), :class:`HubUnreachable` when every attempt failed."""
        import httpx

        backoff = Backoff(self.retry_delay, self.retry_delay * 8)
        failure: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                threading.Event().wait(backoff.next())
            try:
                response = self._http().request(method, url, content=body)
            except httpx.HTTPError as exc:
                failure = exc
                continue
            if response.status_code in (200, 201):
                try:
                    return answer.model_validate_json(response.content)
                except ValueError as exc:
                    detail = f"unreadable answer: {exc}"
                    raise HubRefused(response.status_code, None, detail) from None
            code, detail = _problem(response)
            failure = HubRefused(response.status_code, code, detail)
            if response.status_code not in _RETRIED:
                raise failure
        raise HubUnreachable(f"{type(failure).__name__}: {failure}") from failure

    def close(self) -> None:
        """Close the connections (the client is shutting down)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def after_fork(self) -> None:
        """A forked child makes its own connections."""
        self._lock = threading.Lock()
        self._client = None

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                headers = {
                    "Authorization": f"Bearer {self._api_key}",
                    "User-Agent": f"{SDK_NAME}/{__version__}",
                    "Content-Type": "application/json",
                }
                self._client = hub_client(headers, self.timeout, self._transport)
            return self._client


def holder_name() -> str:
    """This host, process and a random id: who claims an approval, or holds a lease."""
    import os
    import socket
    import uuid

    return f"{socket.gethostname()[:128] or 'host'}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def _problem(response: httpx.Response) -> tuple[str | None, str]:
    """The problem's ``code`` and a description of the answer."""
    from agentops_sdk.exporters.hub import _problem_detail

    code = None
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict) and isinstance(problem.get("code"), str):
        code = problem["code"]
    return code, _problem_detail(response)
