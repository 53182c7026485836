"""The approval stage's requests to the hub: ask, read and claim an approval request.

These are the only requests the SDK makes on behalf of a call that waits (every other hub
request is made by the delivery worker or the hub link's thread). Each is made from the
approval's own helper thread, never from the caller's, with a short timeout and a few retries
with backoff for what may pass (a connection failure, a timeout, a ``5xx``, ``429``); any other
answer is final. httpx and pydantic are imported when the first approval is asked.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Final

from agentops_sdk._version import __version__
from agentops_sdk.enforcement.link import Backoff
from agentops_sdk.exporters import SDK_NAME

if TYPE_CHECKING:
    import httpx

    from agentops_sdk.contract.approvals import ApprovalAsk, ApprovalRequest

__all__ = ["APPROVALS_PATH", "ApprovalClient", "Claimed", "HubRefused", "HubUnreachable"]

APPROVALS_PATH: Final = "/api/v1/approvals"
_RETRIED: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


class HubUnreachable(Exception):
    """The hub could not be reached (or kept failing) after every retry."""


class HubRefused(Exception):
    """The hub answered with an error that retrying will not change."""

    def __init__(self, status: int, code: str | None, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.code = code


class Claimed(Exception):
    """The approval was claimed already (``409 approval_claimed``): its call ran, or runs,
    elsewhere."""


class ApprovalClient:
    """Asks, reads and claims approval requests at ``hub_url`` with ``api_key``.

    Thread-safe: one httpx client, made on first use, serves every waiting approval.
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
        self.base = hub_url.rstrip("/") + APPROVALS_PATH
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.claimant = f"{_host()}/{_pid()}/{uuid.uuid4().hex[:12]}"
        """Who claims, in :class:`~agentops_sdk.contract.approvals.ApprovalClaim`: this host,
        process and client."""
        self._api_key = api_key
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def ask(self, ask: ApprovalAsk) -> ApprovalRequest:
        """Create the request for ``ask``, or get the one its key has already."""
        return self._request("POST", self.base, ask.model_dump_json())

    def read(self, request_id: uuid.UUID) -> ApprovalRequest:
        """The request as the hub holds it now."""
        return self._request("GET", f"{self.base}/{request_id}", None)

    def claim(self, request_id: uuid.UUID) -> ApprovalRequest:
        """Claim the approved request so that its call runs here, once; :class:`Claimed` when
        another claim came first."""
        from agentops_sdk.contract.approvals import ApprovalClaim

        body = ApprovalClaim(claimant=self.claimant).model_dump_json()
        try:
            return self._request("POST", f"{self.base}/{request_id}/claim", body)
        except HubRefused as refused:
            if refused.status == 409 and refused.code == "approval_claimed":
                raise Claimed(str(refused)) from None
            raise

    def close(self) -> None:
        """Close the connections (the client is shutting down)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def after_fork(self) -> None:
        """A forked child makes its own connections, and claims under its own name."""
        self._lock = threading.Lock()
        self._client = None
        self.claimant = f"{_host()}/{_pid()}/{uuid.uuid4().hex[:12]}"

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                headers = {
                    "Authorization": f"Bearer {self._api_key}",
                    "User-Agent": f"{SDK_NAME}/{__version__}",
                    "Content-Type": "application/json",
                }
                self._client = httpx.Client(
                    headers=headers, timeout=self.timeout, transport=self._transport
                )
            return self._client

    def _request(self, method: str, url: str, body: str | None) -> ApprovalRequest:
        import httpx

        from agentops_sdk.contract.approvals import ApprovalRequest

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
                    return ApprovalRequest.model_validate_json(response.content)
                except ValueError as exc:
                    detail = f"unreadable answer: {exc}"
                    raise HubRefused(response.status_code, None, detail) from None
            code, detail = _problem(response)
            failure = HubRefused(response.status_code, code, detail)
            if response.status_code not in _RETRIED:
                raise failure
        raise HubUnreachable(f"{type(failure).__name__}: {failure}") from failure


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


def _host() -> str:
    import socket

    return socket.gethostname()[:128] or "host"


def _pid() -> int:
    import os

    return os.getpid()
