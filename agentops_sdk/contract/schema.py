"""The wire schema: the one definition of what travels between the SDK and the hub.

A :class:`Batch` carries :class:`RunEvent` and :class:`SpanEvent` items (told apart by ``type``);
a :class:`RunUpload` carries one whole run with its spans. The hub answers both with an
:class:`IngestResult`. What the enforcer decided about a call travels as an event of its span
(a :class:`SpanPoint` named ``agentops.decision`` whose attributes are a :class:`DecisionRecord`),
so hubs that predate decisions accept it as any other event.
Ids are UUIDv7 strings made by the SDK, so a batch sent twice is stored once. Every model
rejects unknown fields, so a typo or a newer writer is caught, not silently dropped.
``schema_version`` is bumped on any change a reader must know about.

The SDK's hot path never touches these models (importing pydantic alone costs more than the
SDK's import budget); the worker writes dicts of this shape, and the tests hold the two together.
The hub validates every batch against them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentops_sdk.contract import SCHEMA_VERSION
from agentops_sdk.contract.decisions import (
    DECISION_EVENT,
    MAX_REASON_CHARS,
    MAX_RULE_CHARS,
    Outcome,
    StageName,
)

__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "DecisionRecord",
    "ErrorInfo",
    "Event",
    "IngestResult",
    "ItemRejection",
    "LlmInfo",
    "RunEvent",
    "RunUpload",
    "SdkInfo",
    "SpanEvent",
    "SpanPoint",
]

Name = Annotated[str, Field(max_length=256)]
Status = Literal["running", "ok", "error", "blocked", "cancelled"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorInfo(_Wire):
    """An exception a span or run ended with."""

    type: Annotated[str, Field(max_length=512)]
    message: Annotated[str, Field(max_length=4096)]
    stack: Annotated[str, Field(max_length=16384)] = ""


class LlmInfo(_Wire):
    """Model and token usage of an LLM call.

    ``input_tokens`` counts every input token, ``cached_input_tokens`` (read from the prompt
    cache) and ``cache_write_tokens`` included; ``output_tokens`` counts every output token,
    ``reasoning_tokens`` included. ``cost`` is what the SDK priced the call at, in USD, if it
    did: the hub prices every call itself, keeps both and flags a difference."""

    model: Name | None = None
    provider: Name | None = None
    input_tokens: Annotated[int, Field(ge=0)] | None = None
    output_tokens: Annotated[int, Field(ge=0)] | None = None
    cached_input_tokens: Annotated[int, Field(ge=0)] | None = None
    cache_write_tokens: Annotated[int, Field(ge=0)] | None = None
    reasoning_tokens: Annotated[int, Field(ge=0)] | None = None
    cost: Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=10)] | None = None


class DecisionRecord(_Wire):
    """What an enforcement stage decided about a call (see ``agentops_sdk.contract.decisions``).

    The attributes of a span event named ``agentops.decision``.
    """

    outcome: Outcome
    stage: StageName | None = None
    rule: Annotated[str, Field(max_length=MAX_RULE_CHARS)] | None = None
    reason: Annotated[str, Field(max_length=MAX_REASON_CHARS)] | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class SpanPoint(_Wire):
    """A point-in-time event inside a span."""

    name: Name
    at: datetime
    attributes: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _decisions_are_well_formed(self) -> SpanPoint:
        if self.name == DECISION_EVENT:
            DecisionRecord.model_validate(self.attributes)
        return self


class RunEvent(_Wire):
    """A run, sent when it starts (``status="running"``) and again when it ends."""

    type: Literal["run"] = "run"
    schema_version: Literal[1] = SCHEMA_VERSION
    id: UUID
    agent: Name
    name: Name
    environment: Literal["prod", "staging", "test", "dev"]
    status: Status
    started_at: datetime
    ended_at: datetime | None = None
    tags: list[Name] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    span_count: Annotated[int, Field(ge=0)] = 0
    error_count: Annotated[int, Field(ge=0)] = 0
    input_tokens: Annotated[int, Field(ge=0)] = 0
    output_tokens: Annotated[int, Field(ge=0)] = 0


class SpanEvent(_Wire):
    """A finished span: one agent, tool, step or LLM call inside a run."""

    type: Literal["span"] = "span"
    schema_version: Literal[1] = SCHEMA_VERSION
    id: UUID
    run_id: UUID
    parent_id: UUID | None = None
    kind: Literal["agent", "tool", "step", "llm"]
    name: Name
    status: Status
    started_at: datetime
    ended_at: datetime | None = None
    tags: list[Name] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    llm: LlmInfo | None = None
    events: list[SpanPoint] = Field(default_factory=list)

    @property
    def decisions(self) -> list[DecisionRecord]:
        """What the enforcer decided about this call, in order (none for a plain allow)."""
        return [
            DecisionRecord.model_validate(event.attributes)
            for event in self.events
            if event.name == DECISION_EVENT
        ]


Event = Annotated[RunEvent | SpanEvent, Field(discriminator="type")]


class SdkInfo(_Wire):
    """Which SDK wrote a batch."""

    name: Name
    version: Name


class Batch(_Wire):
    """What the SDK POSTs to ``/api/v1/ingest/batch``."""

    schema_version: Literal[1] = SCHEMA_VERSION
    batch_id: UUID
    sdk: SdkInfo
    events: Annotated[list[Event], Field(max_length=10_000)]


class RunUpload(_Wire):
    """What ``POST /api/v1/ingest/run`` takes: one whole run and its spans, stored all or none."""

    schema_version: Literal[1] = SCHEMA_VERSION
    run: RunEvent
    spans: Annotated[list[SpanEvent], Field(max_length=10_000)] = Field(default_factory=list)


class ItemRejection(_Wire):
    """Why the hub refused one event of a batch (``index`` is its place in ``events``)."""

    index: Annotated[int, Field(ge=0)]
    id: UUID | None
    code: str
    detail: str


class IngestResult(_Wire):
    """The hub's answer to an ingest request: HTTP 200 when nothing was rejected, else 207.

    ``accepted``: events that changed what the hub stores; ``duplicates``: valid events that
    changed nothing (already stored, or older than what is stored); ``rejected``: invalid events,
    one :class:`ItemRejection` each in ``errors``. The three add up to the events sent.
    """

    accepted: Annotated[int, Field(ge=0)]
    duplicates: Annotated[int, Field(ge=0)]
    rejected: Annotated[int, Field(ge=0)]
    errors: list[ItemRejection] = Field(default_factory=list)
