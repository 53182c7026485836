"""The enforcement spine: what every guarded call passes before it runs, and after.

Decorated functions, ``agentops.run()``/``span()`` blocks and framework integrations all start
a call the same way (``Client.start``/``astart``, which ``ExternalCall`` wraps): its span is
opened, then the client's :class:`Enforcer` passes it through fixed stages in a fixed order::

    controls -> policy -> budget -> approval -> guards (the user's, client.guards.add(...))

Each stage returns a :class:`~agentops_sdk.contract.decisions.Decision` (allow, deny,
require_approval, warn, naming the stage and the rule), a :class:`Wait` for one to come, or
nothing. A deny raises the stage's typed error (``AgentKilled``, ``PolicyViolation``...) before
the call's body runs; a ``require_approval`` is settled by the approval stage or refused; a
warn is recorded and the call goes on. Every decision but a plain allow is recorded on the
call's span (an ``agentops.decision`` event), so the hub sees it. When the call ends, the
``after`` hook of every stage it passed sees how it went (:class:`CallResult`: status, tokens,
cost), so a budget can reconcile what it reserved.

A :class:`Wait` blocks a sync call and is awaited by an async one, the LangChain handler's
included. A stage that crashes fails closed or open as it declares (``Stage.fails_closed``):
controls and budgets refuse the call (``EnforcementUnavailable``), the user's guards let it go;
either way the crash is logged, once a minute at most.

Stages read the hub's state from the client's :class:`HubLink`, whose daemon thread swaps in
immutable :class:`Snapshot` objects: no lock and no I/O on the call path. The thread reads a
:class:`HubSource` (the hub's event stream, with ETag polling behind it:
:mod:`agentops_sdk.enforcement.hub_stream`; :class:`LocalHub` is the in-process double for
tests) and runs only when the client has a hub URL and an installed stage reads from it. The
first stage, the hub's emergency controls, is :mod:`agentops_sdk.enforcement.controls`.

The policy stage (:mod:`agentops_sdk.enforcement.policy`, installed by ``init(policy_file=...)``)
is imported only when used: it needs pydantic, which ``import agentops_sdk`` does not load.
The budget stage (:mod:`agentops_sdk.enforcement.budgets`, installed with a hub) reserves each
LLM call's worst-case cost from budget leases kept by a background thread, and reconciles it in
its ``after`` hook.

With no stage installed and no guard added the enforcer is not consulted at all, so a call
costs what it did before the spine existed. A stage with nothing to decide (``Stage.engaged``
False: the policy stage while no set is in force) is left out of the chain until the hub link
update that engages it, so calls do not pay for it either.
"""

from __future__ import annotations

from agentops_sdk.contract.decisions import ALLOW, Decision
from agentops_sdk.enforcement.call import CallInfo, CallResult
from agentops_sdk.enforcement.enforcer import Enforcer
from agentops_sdk.enforcement.link import EMPTY, Backoff, HubLink, HubSource, Snapshot, Update
from agentops_sdk.enforcement.local import LocalHub
from agentops_sdk.enforcement.stage import Stage, Wait

__all__ = [
    "ALLOW",
    "EMPTY",
    "Backoff",
    "CallInfo",
    "CallResult",
    "Decision",
    "Enforcer",
    "HubLink",
    "HubSource",
    "LocalHub",
    "Snapshot",
    "Stage",
    "Update",
    "Wait",
]
