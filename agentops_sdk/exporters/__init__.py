"""Where batches of events go: one small interface, one module per backend.

An exporter receives an :class:`ExportBatch` on the SDK's worker thread and says what became of
it with an :class:`ExportOutcome`: ``sent``, ``retry`` (a transient failure: the worker spools
the batch and tries again later) or ``failed`` (permanent: the events are dropped and counted).
It must return by ``deadline`` (a ``time.monotonic()`` value) and stop waiting as soon as
``cancel`` is set. Exporters never raise; they report.

Backends: :mod:`~agentops_sdk.exporters.hub` (the hub over HTTP),
:mod:`~agentops_sdk.exporters.jsonl` (a local file), :mod:`~agentops_sdk.exporters.console`
and :mod:`~agentops_sdk.exporters.memory` (tests). Pass your own object with these two methods
as ``init(exporter=...)`` to add another.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agentops_sdk.config import Options

__all__ = ["ExportBatch", "ExportOutcome", "Exporter", "build_exporter", "encode"]

SDK_NAME = "agentops-sdk"


@runtime_checkable
class Exporter(Protocol):
    """The interface every backend implements."""

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        """Deliver ``batch``; return by ``deadline``; never raise."""
        ...

    def close(self) -> None:
        """Release connections and files; called once at shutdown."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class ExportOutcome:
    """What became of one batch."""

    status: Literal["sent", "retry", "failed"]
    retries: int = 0
    detail: str | None = None
    auth_failed: bool = False
    rejected: int = 0
    """Events of a sent batch that the receiver refused as invalid (dropped, not sent)."""
    retry_after: float | None = None
    """For ``retry``: how long the receiver asked to be left alone (``Retry-After``), if it did."""
    throttled: bool = False
    """For ``retry``: the receiver is up but asked this client to slow down (HTTP 429)."""

    @classmethod
    def sent(cls, retries: int = 0, rejected: int = 0) -> ExportOutcome:
        """The batch was delivered (all of it but ``rejected`` events)."""
        return cls("sent", retries, rejected=rejected)


_EVENTS_MARK = b',"events":['


class ExportBatch:
    """Events on their way out: as dicts, as encoded JSON lines, and as one request payload.

    A batch read back from the spool, or merged from several, holds only its encoded events:
    the dicts and lines are decoded the first time something asks for them, which the hub
    exporter never does.
    """

    __slots__ = ("_body", "_events", "_lines", "_payload", "batch_id", "count")

    def __init__(self, batch_id: str, events: list[dict[str, Any]], lines: list[bytes]) -> None:
        self.batch_id = batch_id
        self.count = len(lines)
        self._events: list[dict[str, Any]] | None = events
        self._lines: list[bytes] | None = lines
        self._body: bytes | None = None
        self._payload: bytes | None = None

    def __len__(self) -> int:
        return self.count

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events as wire dicts."""
        if self._events is None:
            self._events = json.loads(b"[" + self.body + b"]")
        return self._events

    @property
    def lines(self) -> list[bytes]:
        """Each event as one line of compact JSON."""
        if self._lines is None:
            self._lines = [encode(event) for event in self.events]
        return self._lines

    @property
    def body(self) -> bytes:
        """The encoded events joined by commas: the inside of the payload's ``events`` array."""
        if self._body is None:
            self._body = b",".join(self.lines)
        return self._body

    @property
    def payload(self) -> bytes:
        """The batch as the JSON body the hub ingests (``agentops_sdk.schema.Batch``)."""
        if self._payload is None:
            from agentops_sdk._version import __version__
            from agentops_sdk.spans import SCHEMA_VERSION

            head = encode(
                {
                    "schema_version": SCHEMA_VERSION,
                    "batch_id": self.batch_id,
                    "sdk": {"name": SDK_NAME, "version": __version__},
                }
            )
            self._payload = head[:-1] + _EVENTS_MARK + self.body + b"]}"
        return self._payload

    @classmethod
    def from_payload(cls, payload: bytes, count: int | None = None) -> ExportBatch:
        """Rebuild a batch from a payload (as read back from the spool).

        With ``count`` known (the spool names its files with it) and the layout :attr:`payload`
        writes, nothing is decoded but the small head; anything else is parsed in full. Raises
        ``ValueError`` or ``KeyError`` for a payload that is not a batch.
        """
        mark = payload.find(_EVENTS_MARK)
        if count is not None and mark > 0 and payload.endswith(b"]}"):
            head = json.loads(payload[:mark] + b"}")
            batch = cls(str(head["batch_id"]), [], [])
            batch._events = batch._lines = None
            batch.count = count
            batch._body = payload[mark + len(_EVENTS_MARK) : -2]
        else:
            body = json.loads(payload)
            events: list[dict[str, Any]] = body["events"]
            batch = cls(str(body["batch_id"]), events, [encode(event) for event in events])
        batch._payload = payload
        return batch

    @classmethod
    def merge(cls, batch_id: str, batches: Sequence[ExportBatch]) -> ExportBatch:
        """One batch holding the events of ``batches`` in order, without decoding them."""
        if len(batches) == 1:
            return batches[0]
        merged = cls(batch_id, [], [])
        merged._events = merged._lines = None
        merged.count = sum(batch.count for batch in batches)
        merged._body = b",".join(batch.body for batch in batches if batch.count)
        return merged


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON, the one encoding of the wire."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def build_exporter(options: Options) -> Exporter | None:
    """The exporter ``options`` ask for; ``None`` for ``exporter="none"``."""
    name = options.exporter_name
    if not isinstance(options.exporter, str):
        return options.exporter
    if name == "hub":
        from agentops_sdk.exporters.hub import HubExporter

        assert options.hub_url is not None
        return HubExporter(
            options.hub_url, api_key=options.api_key, request_timeout=options.export_timeout
        )
    if name == "jsonl":
        from agentops_sdk.exporters.jsonl import JsonlExporter

        return JsonlExporter(options.jsonl_path)
    if name == "console":
        from agentops_sdk.exporters.console import ConsoleExporter

        return ConsoleExporter()
    if name == "memory":
        from agentops_sdk.exporters.memory import MemoryExporter

        return MemoryExporter()
    return None
