"""How a client's enforcement is put together from its options: where the hub link reads the
hub, which stages are installed (policy, budget, approval, controls), what each starts from
(the copies an earlier process saved), and the wait for the hub's first word at a first start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agentops_sdk.enforcement.link import Update

if TYPE_CHECKING:
    from agentops_sdk.config import Options
    from agentops_sdk.enforcement.budgets import BudgetStage
    from agentops_sdk.enforcement.controls import KillSwitch
    from agentops_sdk.enforcement.enforcer import Enforcer
    from agentops_sdk.enforcement.link import HubLink, HubSource
    from agentops_sdk.enforcement.policy import PolicyStage
    from agentops_sdk.enforcement.stage import Stage

__all__ = ["hub_source", "install_stages"]

logger = logging.getLogger("agentops_sdk")


def install_stages(options: Options, enforcer: Enforcer) -> KillSwitch | None:
    """Install the stages ``options`` ask for; return the controls stage (None without one).

    With a hub, ``init()`` then waits up to ``hub_wait`` for the hub's first word."""
    with enforcer.link.batched():  # one connection to the hub for all the stages' topics
        policy = _install_policy(options, enforcer)  # before controls: their saved age wins
        budget = _install_budgets(options, enforcer)
        if policy is not None and budget is not None:
            policy.costs = budget.costs  # cost limits price calls at the org's prices too
        _install_approvals(options, enforcer, tuple(s for s in (policy, budget) if s is not None))
        controls = _kill_switch(options, enforcer)
    if controls is not None and options.hub_wait:
        _await_first_word(enforcer.link, options.hub_wait)
    return controls


def hub_source(options: Options, given: HubSource | None) -> HubSource | None:
    """Where the hub link reads the hub's state: nowhere without a hub URL; the source given
    (a test's ``LocalHub``); else the hub's own stream, when there is an API key to open it."""
    if not options.hub_url:
        return None
    if given is not None or not options.api_key:
        return given
    from agentops_sdk.enforcement.hub_stream import HubStream
    from agentops_sdk.enforcement.saved import SavedControls, SavedPolicies

    return HubStream(
        options.hub_url,
        options.api_key,
        poll_interval=options.controls_poll_interval,
        saved=SavedControls(options.spool_dir, options.hub_url, options.api_key),
        saved_policies=SavedPolicies(options.spool_dir, options.hub_url, options.api_key),
        request_timeout=options.export_timeout,
    )


def _kill_switch(options: Options, enforcer: Enforcer) -> KillSwitch | None:
    """The controls stage, installed, for a client with a hub URL and an API key (unless
    ``controls`` is off); it starts from the controls saved by the last process, if any."""
    if not (options.controls and options.hub_url and options.api_key):
        return None
    from agentops_sdk.enforcement.controls import TOPIC, KillSwitch
    from agentops_sdk.enforcement.saved import SavedControls

    stage = KillSwitch(
        enforcer.link, max_staleness=options.max_staleness, on_stale=options.on_stale
    )
    saved = SavedControls(options.spool_dir, options.hub_url, options.api_key).load()
    if saved is not None:
        controls, age = saved
        enforcer.link.restore(Update(TOPIC, controls, controls.etag, via="disk"), age)
    enforcer.install(stage)
    return stage


_GOVERNING = frozenset({"controls", "policies", "budgets"})
"""The hub link topics that decide whether a call may run (approvals only answer questions)."""


def _await_first_word(link: HubLink, timeout: float) -> None:
    """Unless an earlier process saved what it heard, wait up to ``timeout`` seconds for the
    hub's state of every topic the link reads: an agent's first calls must not run ungoverned
    merely because they came before the hub's answer. A restarted agent starts from its saved
    copy and does not wait."""
    topics = link.topics & _GOVERNING

    def heard() -> bool:
        return topics <= link.snapshot.values.keys()

    if link.snapshot.via == "disk" or heard():
        # Restored from what an earlier process heard (a topic it did not save was not worth
        # keeping: no controls, no active set), or heard already.
        return

    if not link.wait_until(heard, timeout):
        logger.warning(
            "agentops: no answer from the hub in %.1f s; calls go ahead under the local policy "
            "file, if any, until it answers (hub_wait)",
            timeout,
        )


def _install_budgets(options: Options, enforcer: Enforcer) -> BudgetStage | None:
    """The budget stage, installed for a client with a hub URL and an API key (unless
    ``controls`` is off); it idles while the org has no budget."""
    if not (options.controls and options.hub_url and options.api_key):
        return None
    from agentops_sdk.enforcement.budget_leases import LeaseClient, LeaseKeeper
    from agentops_sdk.enforcement.budgets import BudgetStage

    client = LeaseClient(options.hub_url, options.api_key, timeout=min(options.export_timeout, 2.0))
    keeper = LeaseKeeper(client, ttl=options.budget_lease_ttl)
    stage = BudgetStage(enforcer.link, keeper, wait=options.budget_wait)
    enforcer.install(stage)
    return stage


def _install_approvals(options: Options, enforcer: Enforcer, askers: tuple[Stage, ...]) -> None:
    """The approval stage, installed for a client with a hub URL and an API key (unless
    ``controls`` is off): a ``require_approval`` of one of ``askers`` (the policy and budget
    stages) then waits for the hub's reviewers (the stage idles while they do: nothing can ask
    it)."""
    if not (options.controls and options.hub_url and options.api_key):
        return
    from agentops_sdk.enforcement.approval_requests import ApprovalClient
    from agentops_sdk.enforcement.approvals import ApprovalStage

    hub = ApprovalClient(options.hub_url, options.api_key, timeout=min(options.export_timeout, 5.0))
    enforcer.install(ApprovalStage(enforcer.link, hub, askers=askers))


def _install_policy(options: Options, enforcer: Enforcer) -> PolicyStage | None:
    """The policy stage, installed for a client with a local policy file, or a hub URL and an
    API key (unless ``controls`` is off: then the hub governs nothing): the hub's set, starting
    from the one the last process saved, if any; the file's set applies whenever the hub has
    none. ``PolicyError`` if the file cannot be read or is
    invalid.

    The policy engine is loaded only when a file is given (or a saved set exists): it needs
    pydantic, which the SDK's own import does not load."""
    hub_url = options.hub_url if options.api_key and options.controls else None
    if options.policy_file is None and not hub_url:
        return None
    from agentops_sdk.enforcement.policy import TOPIC, PolicyStage, hub_policy

    local = None
    if options.policy_file is not None:
        from agentops_sdk.contract.policy import load_policy
        from agentops_sdk.contract.policy_engine import compile_policy

        local = compile_policy(load_policy(options.policy_file))
    if hub_url:
        from agentops_sdk.enforcement.saved import SavedPolicies

        saved = SavedPolicies(options.spool_dir, hub_url, options.api_key).load()
        if saved is not None:
            effective, age = saved
            update = Update(TOPIC, hub_policy(effective), effective.etag, via="disk")
            enforcer.link.restore(update, age)
    stage = PolicyStage(enforcer.link, local)
    enforcer.install(stage)
    return stage
