"""The hub's application factory. Later issues add ingest, storage, auth and the web UI."""

from __future__ import annotations

from litestar import Litestar, get

from agentops_sdk import __version__

__all__ = ["create_app"]


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    """Liveness: the process is up and serving."""
    return {"status": "ok", "version": __version__}


def create_app() -> Litestar:
    """Build the hub's ASGI app."""
    return Litestar(route_handlers=[health])
