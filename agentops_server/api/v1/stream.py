"""``/api/v1/stream``: the org's live updates as Server-Sent Events (controls first).

The SDK holds it with its API key (the ``ingest`` scope allows it) and pages with a person's
token. Each event has a kind (a topic such as ``controls``, or ``heartbeat``, ``resync``), an id
to resume from with ``Last-Event-ID`` and JSON data: see
:mod:`agentops_server.backends.live` and docs/controls.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from agentops_server.auth.guards import requires
from agentops_server.backends.live import LiveUpdates
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.values import Text

__all__ = ["StreamController", "org_stream"]


class StreamController(Controller):
    """The org's stream of live updates."""

    path = "/stream"
    tags = ("stream",)

    @get(
        "/",
        guards=[requires(Permission.STREAM)],
        summary="The org's live updates (Server-Sent Events)",
        description=(
            "A `text/event-stream` that does not end by itself (the hub closes it after "
            "`AGENTOPS_STREAM_MAX_AGE` seconds; reconnect with `Last-Event-ID`). First the "
            "current state of each topic the client does not hold (`controls`: the org's "
            "`ControlSet`), then each new version as it is made, and a `heartbeat` after "
            "each quiet `AGENTOPS_STREAM_HEARTBEAT` seconds. Ids are cursors (`controls:7`): "
            "the versions the client then holds. `resync` (no id) means the client fell "
            "behind: fetch the state again, reconnect without `Last-Event-ID`."
        ),
        media_type="text/event-stream",
    )
    async def stream(
        self,
        request: Request[Principal, Principal, Any],
        live: NamedDependency[LiveUpdates],
        last_event_id: Annotated[
            Text | None,
            HeaderParameter(name="Last-Event-ID", description="The id of the last event received."),
        ] = None,
    ) -> ServerSentEvent:
        """Stream the caller's org's live updates."""
        return ServerSentEvent(org_stream(live, request.auth, last_event_id))


async def org_stream(
    live: LiveUpdates, caller: Principal, last_event_id: str | None
) -> AsyncIterator[ServerSentEventMessage]:
    """The messages of ``caller``'s org's stream, from ``last_event_id`` (also what the pages'
    ``GET /live`` sends, to a session cookie)."""
    async for event in live.events(caller.org_id, last_event_id):
        yield ServerSentEventMessage(data=event.data, event=event.kind, id=event.id)
