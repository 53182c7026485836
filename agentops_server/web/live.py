"""``GET /live``: the org's live stream for the pages, to the session cookie.

The same Server-Sent Events as ``GET /api/v1/stream`` (which takes a bearer credential, and an
``EventSource`` sends none), under the same permission (``stream:read``). The approvals queue
listens to it and reloads its list when a request is decided or a reviewer is notified.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent

from agentops_server.api.v1.stream import org_stream
from agentops_server.auth.guards import requires
from agentops_server.backends.live import LiveUpdates
from agentops_server.security.permissions import Permission
from agentops_server.security.principal import Principal
from agentops_server.values import Text

__all__ = ["LivePages"]


class LivePages(Controller):
    """The org's live stream, for the pages' scripts."""

    @get("/live", guards=[requires(Permission.STREAM)], media_type="text/event-stream")
    async def live_updates(
        self,
        request: Request[Principal, Principal, Any],
        live: NamedDependency[LiveUpdates],
        last_event_id: Annotated[Text | None, HeaderParameter(name="Last-Event-ID")] = None,
    ) -> ServerSentEvent:
        """The org's live updates, from ``Last-Event-ID`` (an ``EventSource`` resumes by it)."""
        return ServerSentEvent(org_stream(live, request.auth, last_event_id))
