"""The approval stage's requests to the hub: ask, read and claim an approval request.

Each is made from the approval's own helper thread, never from the caller's, with a short
timeout and a few retries (:class:`~agentops_sdk.enforcement.hub_requests.HubRequests`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

from agentops_sdk.enforcement.hub_requests import (
    HubRefused,
    HubRequests,
    HubUnreachable,
    holder_name,
)

if TYPE_CHECKING:
    import httpx

    from agentops_sdk.contract.approvals import ApprovalAsk, ApprovalRequest

__all__ = ["APPROVALS_PATH", "ApprovalClient", "Claimed", "HubRefused", "HubUnreachable"]

APPROVALS_PATH: Final = "/api/v1/approvals"


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
        self.claimant = holder_name()
        """Who claims, in :class:`~agentops_sdk.contract.approvals.ApprovalClaim`: this host,
        process and client."""
        self._hub = HubRequests(
            hub_url,
            api_key,
            timeout=timeout,
            attempts=attempts,
            retry_delay=retry_delay,
            transport=transport,
        )

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
        self._hub.close()

    def after_fork(self) -> None:
        """A forked child makes its own connections, and claims under its own name."""
        self._hub.after_fork()
        self.claimant = holder_name()

    def _request(self, method: str, url: str, body: str | None) -> ApprovalRequest:
        from agentops_sdk.contract.approvals import ApprovalRequest

        return self._hub.request(method, url, body, ApprovalRequest)
