"""The contract between the SDK and the hub: what both sides import, and nothing more.

- :mod:`agentops_sdk.contract.schema`: the wire schema, pydantic models of what travels.
- :mod:`agentops_sdk.contract.ids`: time-ordered ids (UUIDv7) and their text form.
- :mod:`agentops_sdk.contract.errors`: the typed errors that stop a call.
- :mod:`agentops_sdk.contract.decisions`: what an enforcement stage decides about a call.
- :mod:`agentops_sdk.contract.controls`: emergency controls (pause, kill) and how a call's
  effective state follows from them.
- :mod:`agentops_sdk.contract.approvals`: human approval requests, their states and answers.
- :mod:`agentops_sdk.contract.budgets`: budgets, their windows, and the leases spend is
  admitted from.
- :mod:`agentops_sdk.contract.policy`: policy sets, the documents of rules an org enforces.
- :mod:`agentops_sdk.contract.policy_engine`: the pure engine that compiles a policy set and
  decides about calls with it; :mod:`agentops_sdk.contract.patterns`, the globs and regexes it
  compiles (regexes that cannot hang the agent), and :mod:`agentops_sdk.contract.arguments`,
  the conditions on arguments.

Nothing here imports the SDK's runtime (client, decorators, buffer, worker, spool, exporters),
starts a thread or registers a process hook, so the hub imports it in every one of its
processes. ``schema``, ``controls`` and the policy modules need pydantic; ``ids``, ``errors``,
``decisions`` and ``patterns`` use the standard library alone, so the SDK's hot path uses them
too.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 1
"""Version of the wire schema; bumped on any change a reader must know about."""
