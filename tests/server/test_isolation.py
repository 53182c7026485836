"""Zero leaks between orgs through the API: every read and write route of the app, called by
another org's most powerful people and keys with this org's ids and names in the path and body,
reveals nothing of this org and changes nothing of it. Hypothesis picks the ids, bodies and
callers; the routes come from the app's route table, so a new route is covered as it lands.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from agentops_server.auth.guards import permission_of
from agentops_server.auth.permissions import Role, Scope
from agentops_server.db import models
from agentops_server.db.engine import create_db_engine
from agentops_server.services.orgs import IssuedKey
from tests.server.conftest import make_org
from tests.server.ingest_events import batch, run_event, span_event
from tests.server.principals import Principals, bearer
from tests.server.routes import PARAMETER, endpoints

Client = TestClient[Litestar]


class Victim:
    """The org whose rows must never leak: its ids, names and emails, and a snapshot of its rows."""

    def __init__(self, database_url: str, key: IssuedKey, client: Client) -> None:
        self.database_url = database_url
        self.org_id = key.org_id
        principals = Principals(database_url, key.org_id)
        try:
            for role in Role:
                principals.member(role, email=f"victim-{role.value}@globex.example")
            principals.key({"read"})
        finally:
            principals.close()
        run = run_event(agent="globex-secret-agent", name="globex-secret-run")
        response = client.post(
            "/api/v1/ingest/batch",
            json=batch(run, span_event(run, name="globex-secret-span")),
            headers=bearer(key.key),
        )
        assert response.status_code == 200, response.text
        engine = create_db_engine(database_url)
        try:
            with Session(engine) as session:
                team = models.Team(org_id=key.org_id, id=uuid.uuid4(), name="globex-secret-team")
                session.add(team)
                session.add(
                    models.Invitation(
                        org_id=key.org_id,
                        id=uuid.uuid4(),
                        email="invitee@globex.example",
                        role="member",
                        token_hash="0" * 64,
                        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
                    )
                )
                session.commit()
        finally:
            engine.dispose()
        self.ids = sorted({value for row in self.rows() for value in row if _is_uuid(value)})
        self.user_ids = [str(user) for user in self._column("memberships", "user_id")]
        self.secrets = sorted(
            {*self.ids, "globex-secret", "@globex.example", key.key.split("_")[2]}
        )

    def rows(self) -> list[tuple[Any, ...]]:
        """Every row of the org, in every tenant table, as sorted tuples of strings."""
        engine = create_db_engine(self.database_url)  # the connecting user, not the app's role
        found: list[tuple[Any, ...]] = []
        try:
            with engine.connect() as connection:
                for table in sorted(models.TENANT_TABLES):
                    column = "id" if table == "orgs" else "org_id"
                    result = connection.execute(
                        text(f"SELECT * FROM {table} WHERE {column} = :org"),
                        {
                            "org": self.org_id
                            if engine.dialect.name == "postgresql"
                            else self.org_id.hex
                        },
                    )
                    found += [(table, *map(_text, row)) for row in result]
        finally:
            engine.dispose()
        return sorted(found)

    def _column(self, table: str, column: str) -> list[Any]:
        engine = create_db_engine(self.database_url)
        try:
            with engine.connect() as connection:
                org = self.org_id if engine.dialect.name == "postgresql" else self.org_id.hex
                return list(
                    connection.execute(
                        text(f"SELECT {column} FROM {table} WHERE org_id = :org"), {"org": org}
                    ).scalars()
                )
        finally:
            engine.dispose()


def _text(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value):
        return str(uuid.UUID(hex=value))  # SQLite stores UUIDs as hex
    return str(value)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def bodies(victim: Victim) -> st.SearchStrategy[dict[str, Any]]:
    """JSON bodies naming the victim's ids and people in the fields our routes take."""
    victim_id = st.sampled_from(victim.ids)
    return st.fixed_dictionaries(
        {},
        optional={
            "user_id": st.sampled_from(victim.user_ids),
            "team_id": victim_id,
            "org_id": victim_id,
            "org": st.sampled_from([str(victim.org_id), "globex"]),
            "role": st.sampled_from([role.value for role in Role]),
            "email": st.just("victim-owner@globex.example"),
            "name": st.just("renamed by an intruder"),
            "scopes": st.lists(st.sampled_from([scope.value for scope in Scope]), max_size=2),
            "slug": st.just("globex"),
        },
    )


@pytest.fixture
def two_orgs(migrated_url: str, client: Client) -> Iterator[tuple[Principals, Victim]]:
    intruder = make_org(migrated_url, "initech")
    victim = Victim(migrated_url, make_org(migrated_url, "globex"), client)
    principals = Principals(migrated_url, intruder.org_id)
    yield principals, victim
    principals.close()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_route_reads_or_writes_another_orgs_rows(
    app: Litestar, client: Client, two_orgs: tuple[Principals, Victim], data: st.DataObject
) -> None:
    principals, victim = two_orgs
    before = victim.rows()
    leaks: list[str] = []
    for method, path_format, handler in endpoints(app, filled=False):
        if permission_of(handler) is None:
            continue
        path = PARAMETER.sub(lambda _: data.draw(st.sampled_from(victim.ids)), path_format)
        caller = data.draw(st.sampled_from(["owner", "admin key"]))
        headers = (
            principals.member(Role.OWNER)
            if caller == "owner"
            else principals.key({Scope.ADMIN.value, Scope.INGEST.value, Scope.READ.value})
        )
        body = data.draw(bodies(victim)) if method in {"POST", "PUT", "PATCH"} else None
        response = client.request(method, path, headers=headers, json=body)
        sent = path + json.dumps(body)  # echoing what the caller sent reveals nothing
        found = [s for s in victim.secrets if s in response.text and s not in sent]
        if found:
            leaks.append(f"{caller} {method} {path} {json.dumps(body)} → {found}")

    assert leaks == []
    assert victim.rows() == before
