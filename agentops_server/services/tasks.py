"""Every domain's derived-work tasks, registered from one place.

The hub (``create_app``) and every ``agentops-hub worker`` call :func:`register_tasks` on their
:class:`~agentops_server.backends.derived_work.DerivedWork`, so the tasks the hub records and
enqueues are the ones the workers run, and the embedded runner runs the same functions. A domain
adds its registrar to :data:`REGISTRARS`: a function that registers its tasks, built from the
:class:`TaskContext` (the process's engine, settings and mailer)::

    def register_tasks(derived: DerivedWork, context: TaskContext) -> None:
        async def notify(payload: Mapping[str, Any]) -> None: ...
        derived.register("governance.control_changed", notify)

Tasks may run more than once for one notice (a retry, a sweep after an outage): they must be
idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from agentops_server.backends.derived_work import DerivedWork
from agentops_server.backends.mailer import Mailer
from agentops_server.services.budgets.alerts import BudgetTasks
from agentops_server.services.budgets.state import Clock, utc_now
from agentops_server.services.costs import totals
from agentops_server.services.governance.approval_tasks import ApprovalTasks
from agentops_server.services.notifications.announcements import Notifier
from agentops_server.settings import Settings

__all__ = ["REGISTRARS", "Registrar", "TaskContext", "register_tasks"]


@dataclasses.dataclass(frozen=True, slots=True)
class TaskContext:
    """What tasks get from the process that runs them: its tenant-isolated database engine
    (tasks act for the org their payload names), settings and mailer."""

    engine: AsyncEngine
    settings: Settings
    mailer: Mailer
    clock: Clock = utc_now
    """The time budgets' windows and alerts are read at (a test's clock, in tests)."""


Registrar = Callable[[DerivedWork, TaskContext], None]
"""Registers one domain's tasks."""


def _notifications(derived: DerivedWork, context: TaskContext) -> None:
    Notifier(context.engine, context.settings, context.mailer, derived).register()


def _approvals(derived: DerivedWork, context: TaskContext) -> None:
    notifier = Notifier(context.engine, context.settings, context.mailer, derived)
    ApprovalTasks(context.engine, notifier).register(derived)


def _costs(derived: DerivedWork, context: TaskContext) -> None:
    if context.settings.pricing:  # with pricing off, nothing is priced and nothing totalled
        totals.register(derived, context.engine)


def _budgets(derived: DerivedWork, context: TaskContext) -> None:
    notifier = Notifier(context.engine, context.settings, context.mailer, derived)
    BudgetTasks(context.engine, notifier, derived, context.clock).register()


REGISTRARS: tuple[Registrar, ...] = (_notifications, _approvals, _costs, _budgets)
"""Every domain's registrar."""


def register_tasks(
    derived: DerivedWork, context: TaskContext, *, extra: Sequence[Registrar] = ()
) -> None:
    """Register every domain's tasks, then ``extra`` ones (``agentops-hub worker --tasks``)."""
    for registrar in (*REGISTRARS, *extra):
        registrar(derived, context)
