"""``/api/v1/ingest``: where the SDK ships runs and spans (keys with the ``ingest`` scope).

``POST /batch`` takes a :class:`~agentops_sdk.schema.Batch` and answers per event: 200 when every
event was accepted, 207 when some were rejected (the others are stored), with an
:class:`~agentops_sdk.schema.IngestResult`. ``POST /run`` takes a
:class:`~agentops_sdk.schema.RunUpload`, one whole run, stored all or none. Both answer only
after the commit, and take ``Content-Encoding: gzip``.
"""

from __future__ import annotations

import zlib
from typing import Any

import anyio.to_thread
from litestar import Controller, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_sdk.contract.schema import IngestResult
from agentops_server.api.problems import problems
from agentops_server.auth.guards import requires
from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.rate_limit import IngestQuota
from agentops_server.refusals import Invalid, TooLarge, Unavailable, Unsupported
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.services.telemetry.ingest import ingest_batch, ingest_run
from agentops_server.settings import Settings

__all__ = ["IngestController"]

_REFUSALS = problems(
    Invalid("malformed_json", "the body is not JSON"),
    Invalid("malformed_gzip", "the gzip body is not valid gzip, or truncated"),
    Invalid("unsupported_schema_version", "the body's schema_version is not one this hub reads"),
    Invalid("json_too_deep", "the body nests arrays and objects too deep"),
    TooLarge("too_many_events", "more events than AGENTOPS_MAX_BATCH_EVENTS in one request"),
    TooLarge("payload_too_large", "the body, or what it inflates to, is over the limit"),
    Unsupported("unsupported_content_encoding", "a Content-Encoding other than gzip"),
    Unavailable("database_unavailable", "the database could not take the events; retry"),
)
"""What the ingest routes refuse, beside what every route may."""


class IngestController(Controller):
    """Batches of events from the SDK, and whole runs."""

    path = "/ingest"
    tags = ("ingest",)
    guards = (requires(Permission.INGEST),)

    @post(
        "/batch",
        status_code=200,
        summary="Ingest a batch of run and span events",
        description=(
            "Body: an `agentops_sdk.schema.Batch` as JSON, optionally `Content-Encoding: gzip`. "
            "Each event is judged on its own: 200 when all were accepted, 207 when some were "
            "rejected (the others are stored). Requires the `ingest` scope."
        ),
        responses={
            207: ResponseSpec(
                IngestResult, description="Some events were rejected; the others are stored."
            ),
            **_REFUSALS,
        },
    )
    async def batch(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        ingest_quota: NamedDependency[IngestQuota],
        derived_work: NamedDependency[DerivedWork],
    ) -> Response[IngestResult]:
        """Store a batch of run and span events; one bad event does not stop the others."""
        body = await _json_body(request, settings.max_body_bytes)
        result = await ingest_batch(
            db_session,
            request.auth.org_id,
            body,
            max_events=settings.max_batch_events,
            charge=ingest_quota.charge,
            derived=derived_work,
            pricing=settings.pricing,
        )
        return Response(result, status_code=207 if result.rejected else 200)

    @post(
        "/run",
        status_code=200,
        summary="Ingest one whole run with its spans",
        description=(
            "Body: an `agentops_sdk.schema.RunUpload` as JSON, optionally `Content-Encoding: "
            "gzip`. Stored all or none. Requires the `ingest` scope."
        ),
        responses=_REFUSALS,
    )
    async def run(
        self,
        request: Request[Principal, Principal, State],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        ingest_quota: NamedDependency[IngestQuota],
        derived_work: NamedDependency[DerivedWork],
    ) -> IngestResult:
        """Store one whole run with its spans, all or none."""
        body = await _json_body(request, settings.max_body_bytes)
        return await ingest_run(
            db_session,
            request.auth.org_id,
            body,
            max_events=settings.max_batch_events,
            charge=ingest_quota.charge,
            derived=derived_work,
            pricing=settings.pricing,
        )


async def _json_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The body, decompressed: at most ``limit`` bytes either way (Litestar checks the raw)."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in {"", "identity"}:
        return body
    if encoding not in {"gzip", "x-gzip"}:
        raise Unsupported(
            "unsupported_content_encoding", f"Content-Encoding {encoding!r}: send gzip."
        )
    return await anyio.to_thread.run_sync(_gunzip, body, limit)  # off the event loop


def _gunzip(body: bytes, limit: int) -> bytes:
    """Inflate every gzip member of ``body``, stopping as soon as more than ``limit`` comes out.

    The limit is what guards against a decompression bomb: a few KiB that inflate to gigabytes
    never get further than ``limit + 1`` bytes.
    """
    inflated = bytearray()
    rest = body
    while rest:
        member = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            inflated += member.decompress(rest, limit + 1 - len(inflated))
        except zlib.error as exc:
            raise Invalid("malformed_gzip", f"The body is not valid gzip: {exc}") from exc
        if len(inflated) > limit:
            raise TooLarge("payload_too_large", f"The body inflates to more than {limit} bytes.")
        if not member.eof:
            raise Invalid("malformed_gzip", "The gzip body is truncated.")
        rest = member.unused_data
    return bytes(inflated)
