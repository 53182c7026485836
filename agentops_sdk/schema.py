"""The wire schema, at the import path it has always had: see :mod:`agentops_sdk.contract.schema`.

Importing it loads the contract alone, none of the SDK's runtime.
"""

from __future__ import annotations

from agentops_sdk.contract.schema import (
    SCHEMA_VERSION,
    Batch,
    DecisionRecord,
    ErrorInfo,
    Event,
    IngestResult,
    ItemRejection,
    LlmInfo,
    RunEvent,
    RunUpload,
    SdkInfo,
    SpanEvent,
    SpanPoint,
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
