"""Tenant isolation: every transaction of the app runs as one org (and, at sign-in, one user).

Two layers enforce it, so a query that forgets its org filter still sees nothing of another org:

- **Data-access layer** (both databases): sessions of the app are :class:`TenantSession`\\ s;
  every ORM statement they run gets ``org_id = <current org>`` added for each tenant model
  (SQLAlchemy's ``with_loader_criteria``), and a flush that would write a row of another org
  raises :class:`CrossTenantWrite`. This is the isolation SQLite has.
- **PostgreSQL row-level security**: each tenant table has a policy (see
  :mod:`agentops_server.db.rls`) and ``FORCE ROW LEVEL SECURITY``. Every transaction on the
  app's engine starts by switching to the restricted role (``settings.db_app_role``, which can
  never bypass RLS, whatever user the hub connects as) and setting ``app.org_id`` and
  ``app.user_id`` for that transaction only (``set_config(…, true)`` is ``SET LOCAL``).

The current tenant lives in a context variable: the authentication middleware sets it for each
request (an empty tenant for public routes: they see no tenant rows), and code that acts for an
org outside a request (sign-up, the CLI) enters :func:`tenant`. Rows of ``USER_VISIBLE_TABLES``
are also visible to the user in ``app.user_id`` (their memberships and sessions in every org).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, event, false, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from agentops_server.db import models

__all__ = [
    "CrossTenantWrite",
    "Tenant",
    "TenantSession",
    "current_tenant",
    "install_row_level_security",
    "tenant",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Tenant:
    """Whose rows a transaction may see: an org, a user acting in their own name, or neither."""

    org_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None


NOBODY = Tenant()
_current: contextvars.ContextVar[Tenant] = contextvars.ContextVar("agentops_tenant", default=NOBODY)


def current_tenant() -> Tenant:
    """The tenant of the running request or :func:`tenant` block (nobody by default)."""
    return _current.get()


@contextlib.contextmanager
def tenant(org_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None) -> Iterator[Tenant]:
    """Act as ``org_id`` (and ``user_id``) inside the block; transactions begun in it see only
    that org's rows::

        with tenant(org_id=org.id):
            await session.execute(select(ApiKey))  # this org's keys, on any database
    """
    token = _current.set(Tenant(org_id, user_id))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def set_tenant(value: Tenant) -> contextvars.Token[Tenant]:
    """Set the tenant for the rest of the current context (the middleware's form)."""
    return _current.set(value)


def reset_tenant(token: contextvars.Token[Tenant]) -> None:
    """Undo :func:`set_tenant`."""
    _current.reset(token)


class TenantSession(Session):
    """The app's ORM session class: its statements only ever reach the current tenant's rows."""


class CrossTenantWrite(RuntimeError):
    """An attempt to write a row of another org than the current tenant's (a bug, always)."""


@event.listens_for(TenantSession, "before_flush")
def _check_writes(session: Session, _context: Any, _instances: Any) -> None:
    who = _current.get()
    for row in (*session.new, *session.dirty, *session.deleted):
        table = getattr(row, "__tablename__", None)
        if table not in models.TENANT_TABLES:
            continue
        org_id = row.id if table == "orgs" else row.org_id
        if org_id != who.org_id:
            raise CrossTenantWrite(
                f"writing a {table} row of org {org_id} while acting for org {who.org_id}"
            )


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    if state.is_column_load or state.is_relationship_load:
        return  # the parent statement already carries the criteria
    who = _current.get()
    state.statement = state.statement.options(
        *(_criteria(model, who) for model in _TENANT_MODELS),
    )


def _criteria(model: type[models.Base], who: Tenant) -> Any:
    org, user = who.org_id, who.user_id
    if model is models.Org:
        return with_loader_criteria(
            models.Org,
            lambda cls: or_(
                cls.id == org,
                cls.id.in_(
                    select(models.Membership.org_id).where(models.Membership.user_id == user)
                ),
            ),
            include_aliases=True,
        )
    if model.__tablename__ in models.USER_VISIBLE_TABLES:
        return with_loader_criteria(
            model, lambda cls: or_(cls.org_id == org, cls.user_id == user), include_aliases=True
        )
    if org is None:
        return with_loader_criteria(model, false(), include_aliases=True)
    return with_loader_criteria(model, lambda cls: cls.org_id == org, include_aliases=True)


_TENANT_MODELS: tuple[type[models.Base], ...] = tuple(
    mapper.class_
    for mapper in models.Base.registry.mappers
    if mapper.class_.__tablename__ in models.TENANT_TABLES
)


def install_row_level_security(engine: Engine, role: str) -> None:
    """Make every transaction on ``engine`` (PostgreSQL) run as ``role`` for the current tenant.

    One round trip per transaction: the role and both settings in one ``SELECT``, all three
    local to the transaction, so a pooled connection carries nothing over to the next request.
    """
    if engine.dialect.name != "postgresql":
        return

    def begin(connection: Connection) -> None:
        who = _current.get()
        connection.exec_driver_sql(
            "SELECT set_config('role', %(role)s, true), "
            "set_config('app.org_id', %(org)s, true), "
            "set_config('app.user_id', %(user)s, true)",
            {
                "role": role,
                "org": str(who.org_id) if who.org_id else "",
                "user": str(who.user_id) if who.user_id else "",
            },
        )

    event.listen(engine, "begin", begin)
