"""Ship batches to the hub over HTTP: gzip, keep-alive, API key.

One export is one request: a transient failure (connection error, timeout, 408, 425, 5xx, 429) is
reported at once as ``retry``, with the hub's ``Retry-After`` when it gave one, and the worker
puts the batch in the spool and decides when to try again (see :mod:`agentops_sdk.sender`). A
429 is reported as ``throttled``: the hub is up and asks this key to slow down. The only retry
made here is the immediate one for a keep-alive connection the hub closed while it sat idle.
Authentication failures (401, 403) are logged once with the hub's reason and counted. Other 4xx
answers mean the hub will never take this batch: they are logged and the batch is reported
``failed``. A 207 answer means the hub stored the batch but refused some of its events as
invalid: those are counted as dropped (``rejected``), and the first reason is logged.

httpx and tenacity are imported at the first export, on the worker thread: neither
``import agentops_sdk`` nor ``init()`` pays for them on the agent's thread.
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from agentops_sdk._version import __version__
from agentops_sdk.exporters import SDK_NAME, ExportBatch, ExportOutcome
from agentops_sdk.hub_http import hub_client

if TYPE_CHECKING:
    import httpx

__all__ = ["INGEST_PATH", "HubExporter"]

logger = logging.getLogger("agentops_sdk")

INGEST_PATH = "/api/v1/ingest/batch"
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_AUTH_STATUS = frozenset({401, 403})


class HubExporter:
    """POSTs gzip-compressed batches to ``{hub_url}/api/v1/ingest/batch``."""

    def __init__(self, hub_url: str, *, api_key: str | None, request_timeout: float = 10.0) -> None:
        self.url = hub_url.rstrip("/") + INGEST_PATH
        self._api_key = api_key
        self._request_timeout = request_timeout
        self._client: httpx.Client | None = None
        self._auth_reported = False

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        """Send ``batch`` in one request that ends by ``deadline``."""
        body = gzip.compress(batch.payload, compresslevel=5)

        import tenacity

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_StaleConnection),
            stop=tenacity.stop_after_attempt(2),
            reraise=True,
        )
        try:
            response = retrying(self._post, body, deadline)
        except (_Transient, _StaleConnection) as exc:
            status = getattr(exc, "status", None)
            return ExportOutcome(
                "retry",
                retries=1,
                detail=str(exc),
                retry_after=getattr(exc, "retry_after", None),
                throttled=status == 429,
            )
        retries = retrying.statistics.get("attempt_number", 1) - 1
        if response.is_success:
            rejected = _rejected(response, len(batch)) if response.status_code == 207 else 0
            return ExportOutcome.sent(retries, rejected)
        reason = _problem_detail(response)
        if response.status_code in _AUTH_STATUS:
            if not self._auth_reported:
                self._auth_reported = True
                logger.error(
                    "agentops: the hub at %s refused the API key (HTTP %s: %s); events are "
                    "being dropped until the key is fixed",
                    self.url,
                    response.status_code,
                    reason,
                )
            return ExportOutcome("failed", retries, reason, auth_failed=True)
        logger.error(
            "agentops: the hub rejected a batch of %d events (HTTP %s: %s); it is dropped",
            len(batch),
            response.status_code,
            reason,
        )
        return ExportOutcome("failed", retries, reason)

    def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connections without touching them."""
        self._client = None
        self._auth_reported = False

    def _post(self, body: bytes, deadline: float) -> httpx.Response:
        import httpx

        timeout = max(0.05, min(self._request_timeout, deadline - time.monotonic()))
        try:
            response = self._http().post(self.url, content=body, timeout=timeout)
        except httpx.RemoteProtocolError as exc:
            # The hub closed an idle keep-alive connection just as it was reused: one retry.
            raise _StaleConnection(f"{type(exc).__name__}: {exc}") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in _TRANSIENT_STATUS:
            raise _Transient(
                f"HTTP {response.status_code}: {_problem_detail(response)}",
                status=response.status_code,
                retry_after=_retry_after(response),
            )
        return response

    def _http(self) -> httpx.Client:
        if self._client is None:
            headers = {
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "User-Agent": f"{SDK_NAME}/{__version__}",
            }
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = hub_client(headers, self._request_timeout)
        return self._client


class _Transient(Exception):
    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _StaleConnection(Exception):
    pass


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, moment.timestamp() - time.time())


def _rejected(response: httpx.Response, size: int) -> int:
    """How many events of a batch of ``size`` a 207 answer refused; logs the first reason."""
    try:
        answer: Any = response.json()
        rejected = max(0, min(int(answer["rejected"]), size))
        errors = answer.get("errors") or [{}]
        first = errors[0] if isinstance(errors[0], dict) else {}
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        logger.warning(
            "agentops: the hub answered HTTP 207 with a body this SDK cannot read: %s",
            response.text[:200],
        )
        return 0
    if rejected:
        logger.warning(
            "agentops: the hub rejected %d of %d events of a batch; they are dropped "
            "(first: events[%s], id %s: %s - %s)",
            rejected,
            size,
            first.get("index"),
            first.get("id"),
            first.get("code"),
            first.get("detail"),
        )
    return rejected


def _problem_detail(response: httpx.Response) -> str:
    """The RFC 9457 ``code``/``detail`` of an error answer, or the start of its body."""
    try:
        problem: Any = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(problem, dict):
        parts = [str(problem[key]) for key in ("code", "detail", "title") if problem.get(key)]
        if parts:
            return " - ".join(parts)
    return response.text[:200]
