"""The contract between the SDK and the hub: what both sides import, and nothing more.

- :mod:`agentops_sdk.contract.schema`: the wire schema, pydantic models of what travels.
- :mod:`agentops_sdk.contract.ids`: time-ordered ids (UUIDv7) and their text form.
- :mod:`agentops_sdk.contract.errors`: the typed errors that stop a call.
- :mod:`agentops_sdk.contract.decisions`: what an enforcement stage decides about a call.
- :mod:`agentops_sdk.contract.controls`: emergency controls (pause, kill) and how a call's
  effective state follows from them.

The pure policy engine joins them next. Nothing here imports the SDK's runtime (client,
decorators, buffer, worker, spool, exporters), starts a thread or registers a process hook, so
the hub imports it in every one of its processes. Only ``schema`` needs pydantic; the other
modules but ``controls`` use the standard library alone, so the SDK's hot path uses them too.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 1
"""Version of the wire schema; bumped on any change a reader must know about."""
