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
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from sqlalchemy.orm import Session

from agentops_server.auth.guards import permission_of
from agentops_server.db import models
from agentops_server.security.permissions import Role, Scope
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.api import Client, bearer
from tests.server.conftest import make_org
from tests.server.database import db_id, direct_session, rows
from tests.server.ingest_events import batch, run_event, span_event
from tests.server.principals import People, limited_key
from tests.server.routes import PARAMETER, endpoints
from tests.server.servers import wait_until


class Victim:
    """The org whose rows must never leak: its ids, names and emails, and a snapshot of its rows."""

    def __init__(self, database_url: str, key: IssuedKey, client: Client) -> None:
        self.database_url = database_url
        self.org_id = key.org_id
        people = People(database_url, key.org_id)
        emails = [f"victim-{role.value}@globex.example" for role in Role]
        members = [people.add(role, email=email) for role, email in zip(Role, emails, strict=True)]
        limited_key(database_url, key.org_id, scopes=["read"])
        run = run_event(agent="globex-secret-agent", name="globex-secret-run")
        response = client.post(
            "/api/v1/ingest/batch",
            json=batch(run, span_event(run, name="globex-secret-span")),
            headers=bearer(key.key),
        )
        assert response.status_code == 200, response.text
        rolled_up = wait_until(  # derived work must not change the victim's rows mid-test
            lambda: rows(
                database_url,
                "SELECT 1 FROM analytics_rollups WHERE org_id = :org",
                org=db_id(database_url, key.org_id),
            ),
            timeout=10.0,
        )
        assert rolled_up, "the victim's ingest was never rolled up"
        people.team("globex-secret-team")
        invitee = "invitee@globex.example"
        with direct_session(database_url) as session:
            session.add(
                models.Invitation(
                    org_id=key.org_id,
                    id=uuid.uuid4(),
                    email=invitee,
                    role="member",
                    token_hash="0" * 64,
                    expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
                )
            )
            session.flush()
            _add_notifications(session, key.org_id, members[0].user_id)
            now = dt.datetime.now(dt.UTC)
            session.add(
                models.Control(
                    org_id=key.org_id,
                    scope_kind="agent",
                    scope_value="globex-secret-agent",
                    state="killed",
                    reason="globex-secret-incident",
                    actor=emails[0],
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.add(models.ControlVersion(org_id=key.org_id, version=1))
            _add_policies(session, key.org_id)
            _add_approval(session, key.org_id)
            _add_pricing(session, key.org_id)
            _add_budgets(session, key.org_id)
            session.commit()
        self.ids = sorted({value for row in self.rows() for value in row if _is_uuid(value)})
        self.user_ids = [
            _text(user)
            for (user,) in rows(
                database_url,
                "SELECT user_id FROM memberships WHERE org_id = :org",
                org=db_id(database_url, key.org_id),
            )
        ]
        self.secrets = sorted({*self.ids, "globex-secret", *emails, invitee, key.key.split("_")[2]})

    def rows(self) -> list[tuple[str, ...]]:
        """Every row of the org, in every tenant table, as sorted tuples of strings."""
        return org_rows(self.database_url, self.org_id)


class Intruder:
    """The other org's owners and admin keys, and everything they have sent the hub so far.

    A value the intruder sent earlier, stored in its own org and shown back to it later (the
    victim's email in its own invitation, listed by ``GET /invitations``) reveals nothing. The
    database outlives each Hypothesis example, so what was sent is kept for the whole test.
    """

    def __init__(self, database_url: str, key: IssuedKey, victim: Victim) -> None:
        self.database_url = database_url
        self.org_id = key.org_id
        self.victim = victim
        self.people = People(database_url, key.org_id)
        self.sent: list[str] = []

    def headers(self, caller: str) -> dict[str, str]:
        """A fresh credential of ``caller``: ``owner`` or ``admin key``."""
        if caller == "owner":
            return self.people.add(Role.OWNER).headers
        scopes = [Scope.ADMIN.value, Scope.INGEST.value, Scope.READ.value]
        return bearer(limited_key(self.database_url, self.org_id, scopes=scopes).key)

    def request(
        self, client: Client, method: str, path: str, caller: str, body: dict[str, Any] | None
    ) -> tuple[Any, list[str]]:
        """The answer to the request, and the victim's secrets it shows that the intruder could
        not know: not sent in this request, nor sent earlier and kept in the intruder's org."""
        response = client.request(method, path, headers=self.headers(caller), json=body)
        sent = path + json.dumps(body)  # echoing what the caller sent reveals nothing
        shown = [s for s in self.victim.secrets if s in response.text and s not in sent]
        if shown:
            kept = str(org_rows(self.database_url, self.org_id))
            shown = [s for s in shown if not (s in kept and any(s in e for e in self.sent))]
        self.sent.append(sent)
        return response, shown


def _add_notifications(session: Session, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """A notification of the victim's owner, a webhook of the victim's and one delivery."""
    now = dt.datetime.now(dt.UTC)
    webhook = models.Webhook(
        org_id=org_id,
        id=uuid.uuid4(),
        url="https://globex-secret.example/hook",
        events=["control.changed"],
        secret="sealed-globex-secret",
        enabled=True,
    )
    session.add_all(
        [
            models.Notification(
                org_id=org_id,
                id=uuid.uuid4(),
                user_id=user_id,
                kind="control.changed",
                title="globex-secret control",
                body="globex-secret body",
                data={},
                created_at=now,
            ),
            webhook,
        ]
    )
    session.flush()
    session.add(
        models.WebhookDelivery(
            org_id=org_id,
            id=uuid.uuid4(),
            webhook_id=webhook.id,
            event="control.changed",
            payload={"data": "globex-secret payload"},
            status="delivered",
            attempts=1,
        )
    )


def _add_policies(session: Session, org_id: uuid.UUID) -> None:
    """An active policy version of the victim's, with a secret rule and table test."""
    version = models.PolicyVersion(
        org_id=org_id,
        id=uuid.uuid4(),
        number=1,
        document={"version": 1, "rules": [{"id": "globex-secret-rule", "outcome": "deny"}]},
        tests=[
            {"name": "globex-secret test", "given": {"kind": "tool", "name": "x"}, "expect": "deny"}
        ],
        author_type="system",
    )
    session.add(version)
    session.flush()
    session.add(
        models.PolicyState(org_id=org_id, latest_number=1, active_id=version.id, revision=1)
    )


def _add_approval(session: Session, org_id: uuid.UUID) -> None:
    """A pending approval request of the victim's, with secret arguments."""
    now = dt.datetime.now(dt.UTC)
    session.add(
        models.ApprovalRequest(
            org_id=org_id,
            id=uuid.uuid4(),
            key="a" * 64,
            state="pending",
            agent="globex-secret-agent",
            environment="prod",
            run_id="globex-secret-run-id",
            span_id="globex-secret-span-id",
            kind="tool",
            name="send_email",
            arguments={"to": "globex-secret@rival.example"},
            arguments_sha256="b" * 64,
            arguments_valid=True,
            rule="globex-secret-rule",
            on_expiry="deny",
            on_reject="raise",
            allow_self_approval=False,
            created_at=now,
            expires_at=now + dt.timedelta(hours=1),
        )
    )
    session.add(models.ApprovalRevision(org_id=org_id, revision=1))


def _add_pricing(session: Session, org_id: uuid.UUID) -> None:
    """A custom model price of the victim's, and a recompute job of its."""
    now = dt.datetime.now(dt.UTC)
    session.add_all(
        [
            models.ModelPriceRow(
                org_id=org_id,
                id=uuid.uuid4(),
                provider="",
                model="globex-secret-model",
                input=Decimal("3"),
                output=Decimal("15"),
                tiers=[],
                note="globex-secret price",
                created_at=now,
                updated_at=now,
            ),
            models.PricingJob(
                org_id=org_id,
                id=uuid.uuid4(),
                range_from=now - dt.timedelta(days=1),
                range_to=now,
                status="done",
                spans_priced=0,
                runs_totalled=0,
                requested_by="globex-secret-requester",
                created_at=now,
            ),
        ]
    )


def _add_budgets(session: Session, org_id: uuid.UUID) -> None:
    """A budget of the victim's, with a charge, a live lease and an alert on it."""
    now = dt.datetime.now(dt.UTC)
    budget_id, lease_id = uuid.uuid4(), uuid.uuid4()
    window = dt.datetime.combine(now.date(), dt.time(), dt.UTC)
    session.add(
        models.BudgetRow(
            org_id=org_id,
            id=budget_id,
            name="globex-secret-budget",
            scope_kind="agent",
            scope_value="globex-secret-agent",
            limit_usd=Decimal("100"),
            period="daily",
            timezone="UTC",
            hard=True,
            thresholds=[50, 80, 100],
            on_unknown_cost="deny",
            fail_mode="closed",
            auto_pause=False,
            auto_resume=False,
            version=1,
            notify=[],
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    session.add_all(
        [
            models.BudgetVersion(org_id=org_id, version=1),
            models.BudgetLedgerEntry(
                org_id=org_id,
                id=uuid.uuid4(),
                budget_id=budget_id,
                window_start=window,
                amount_usd=Decimal("7"),
                tokens=10,
                span_id=uuid.uuid4(),
                run_id=uuid.uuid4(),
                lease_id=lease_id,
                at=now,
            ),
            models.BudgetLease(
                org_id=org_id,
                id=lease_id,
                request_id=uuid.uuid4(),
                budget_id=budget_id,
                holder="globex-secret-holder",
                state="active",
                granted_usd=Decimal("20"),
                spent_usd=Decimal("0"),
                window_start=window,
                window_end=window + dt.timedelta(days=1),
                expires_at=now + dt.timedelta(hours=1),
                budget_version=1,
                created_at=now,
                updated_at=now,
            ),
            models.BudgetAlert(
                org_id=org_id,
                id=uuid.uuid4(),
                budget_id=budget_id,
                window_start=window,
                threshold=50,
                kind="threshold",
                spent_usd=Decimal("50"),
                raised_at=now,
            ),
        ]
    )


def org_rows(database_url: str, org_id: uuid.UUID) -> list[tuple[str, ...]]:
    """Every row of ``org_id`` in every tenant table, as sorted tuples of strings."""
    found: list[tuple[str, ...]] = []
    for table in sorted(models.TENANT_TABLES):
        column = "id" if table == "orgs" else "org_id"
        selected = rows(
            database_url,
            f"SELECT * FROM {table} WHERE {column} = :org",
            org=db_id(database_url, org_id),
        )
        found += [(table, *map(_text, row)) for row in selected]
    return sorted(found)


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
            "scope": st.sampled_from(
                [{"kind": "agent", "value": "globex-secret-agent"}, {"kind": "org"}]
            ),
            "state": st.sampled_from(["active", "paused", "killed"]),
            "reason": st.just("an intruder's reason"),
            "agents": st.just(["globex-secret-agent"]),
            "filter": st.just({}),
            "tags": st.just(["globex-secret-tag"]),
            "ids": st.lists(victim_id, min_size=1, max_size=3),
            "decision": st.sampled_from(["approve", "reject", "cancel"]),
            "claimant": st.just("an intruder"),
            "model": st.just("globex-secret-model"),
            "input": st.just("3"),
            "output": st.just("15"),
            "from": st.just("2020-01-01T00:00:00Z"),
            "to": st.just("2100-01-01T00:00:00Z"),
        },
    )


@pytest.fixture
def intruder(migrated_url: str, client: Client) -> Intruder:
    """initech, intruding on globex."""
    initech = make_org(migrated_url, "initech")
    victim = Victim(migrated_url, make_org(migrated_url, "globex"), client)
    return Intruder(migrated_url, initech, victim)


@pytest.mark.timeout(600)  # 5 walks of every route: past 75 s on a loaded 2-core machine
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_route_reads_or_writes_another_orgs_rows(
    app: Litestar, client: Client, intruder: Intruder, data: st.DataObject
) -> None:
    victim = intruder.victim
    before = victim.rows()
    leaks: list[str] = []
    for method, path_format, handler in endpoints(app, filled=False):
        if permission_of(handler) is None:
            continue
        path = PARAMETER.sub(lambda _: data.draw(st.sampled_from(victim.ids)), path_format)
        caller = data.draw(st.sampled_from(["owner", "admin key"]))
        body = data.draw(bodies(victim)) if method in {"POST", "PUT", "PATCH"} else None
        _, shown = intruder.request(client, method, path, caller, body)
        if shown:
            leaks.append(f"{caller} {method} {path} {json.dumps(body)} → {shown}")

    assert leaks == []
    assert victim.rows() == before
