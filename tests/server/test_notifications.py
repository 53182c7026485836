"""In-app notifications and email: a control change tells the members who should know (owners,
admins, the team leads of the team it touches), once, in the app and by email; each member reads
and marks only their own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from agentops_server import Settings, create_app
from agentops_server.backends.derived_work import InProcessRunner
from agentops_server.backends.mailer import FileMailer
from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.models import Agent
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.notifications.announcements import CONTROL_CHANGED, Notifier
from agentops_server.services.notifications.inbox import NotificationView
from tests.sdk.fake_hub import free_port
from tests.server.api import Client, assert_problem
from tests.server.conftest import make_org
from tests.server.database import direct_session
from tests.server.derived import control_notice, hub_with
from tests.server.mail import Inbox, mailbox, serving_smtp
from tests.server.principals import People, Person
from tests.server.servers import serving
from tests.server.streams import last_of, listening
from tests.server.webhook_receiver import receiving


def notifications(client: Client, person: Person, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/notifications", params=params, headers=person.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def unread(client: Client, person: Person) -> int:
    response = client.get("/api/v1/notifications/unread-count", headers=person.headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["unread"]
    return count


def test_a_team_control_notifies_owners_admins_and_that_teams_leads_only(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    payments = people.team("payments")
    search = people.team("search")
    owner, admin = people.add(Role.OWNER), people.add(Role.ADMIN)
    lead = people.add(Role.TEAM_LEAD, teams=[payments])
    other_lead = people.add(Role.TEAM_LEAD, teams=[search])
    member = people.add(Role.MEMBER, teams=[payments])
    viewer = people.add(Role.VIEWER)
    notice = control_notice(org.org_id, scope={"kind": "team", "value": "payments"})

    with hub_with(settings) as hub:
        hub.enqueue(CONTROL_CHANGED, notice)
        hub.settle()
        told = {p.user_id: notifications(hub.client, p) for p in (owner, admin, lead)}
        untold = [notifications(hub.client, p) for p in (other_lead, member, viewer)]

    assert untold == [[], [], []]
    for items in told.values():
        [item] = items
        assert item["kind"] == "control.changed"
        assert item["title"] == "Agents killed: team payments"
        assert "runaway spend" in item["body"]
        assert item["data"]["action"] == "kill"
        assert item["data"]["control_ids"] == notice["control_ids"]
        assert item["read_at"] is None


def test_an_agent_in_a_bulk_control_reaches_the_lead_of_the_agents_team(
    settings: Settings, people: People, org: IssuedKey, migrated_url: str
) -> None:
    billing = people.team("billing")
    lead = people.add(Role.TEAM_LEAD, teams=[billing])
    now = dt.datetime.now(dt.UTC)
    with direct_session(migrated_url) as session:
        session.add(
            Agent(
                org_id=org.org_id,
                name="invoicer",
                team_id=billing,
                first_seen_at=now,
                last_seen_at=now,
            )
        )
        session.commit()
    scopes = [{"kind": "agent", "value": "invoicer"}, {"kind": "tag", "value": "batch"}]

    with hub_with(settings) as hub:
        hub.enqueue(CONTROL_CHANGED, control_notice(org.org_id, action="pause", scope=scopes))
        hub.settle()
        [item] = notifications(hub.client, lead)

    assert item["title"] == "Agents paused: agent invoicer, tag batch"


def test_each_notification_is_mailed_through_smtp_once_however_often_the_task_runs(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER, email="olga@acme.example")
    admin = people.add(Role.ADMIN, email="adam@acme.example")
    notice = control_notice(org.org_id, reason="leaking secrets")
    inbox = Inbox()

    with (
        serving_smtp(inbox) as port,
        hub_with(settings, mail_url=f"smtp://127.0.0.1:{port}") as hub,
    ):
        hub.enqueue(CONTROL_CHANGED, notice)
        hub.settle()
        hub.enqueue(CONTROL_CHANGED, notice)  # a queue may run a task twice
        hub.settle()
        counts = [len(notifications(hub.client, p)) for p in (owner, admin)]

    received = [inbox.next_message(), inbox.next_message()]
    assert inbox.received.empty()
    assert counts == [1, 1]
    assert sorted(r.rcpt_tos[0] for r in received) == ["adam@acme.example", "olga@acme.example"]
    for message in received:
        assert message.message["Subject"] == "Agents killed: org"
        body = message.message.get_body(("plain",))
        assert body is not None
        assert "leaking secrets" in body.get_content()


def test_marking_read_one_and_all_updates_the_unread_count(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner, admin = people.add(Role.OWNER), people.add(Role.ADMIN)

    with hub_with(settings) as hub:
        for action in ("pause", "resume", "kill"):
            hub.enqueue(CONTROL_CHANGED, control_notice(org.org_id, action=action))
        hub.settle()
        client = hub.client
        first, *_ = notifications(client, owner)
        before = unread(client, owner)
        marked = client.post(f"/api/v1/notifications/{first['id']}/read", headers=owner.headers)
        again = client.post(f"/api/v1/notifications/{first['id']}/read", headers=owner.headers)
        after_one = unread(client, owner)
        unread_items = notifications(client, owner, unread="true")
        other_persons = client.post(
            f"/api/v1/notifications/{first['id']}/read", headers=admin.headers
        )
        all_marked = client.post("/api/v1/notifications/read-all", headers=owner.headers)
        after_all = unread(client, owner)
        admins_unread = unread(client, admin)
        page = client.get("/api/v1/notifications", params={"limit": 2}, headers=owner.headers)
        rest = client.get(
            "/api/v1/notifications",
            params={"cursor": page.json()["next_cursor"]},
            headers=owner.headers,
        )

    assert before == 3
    assert marked.status_code == 200
    assert marked.json()["read_at"] is not None
    assert again.json()["read_at"] == marked.json()["read_at"]
    assert after_one == 2
    assert first["id"] not in [item["id"] for item in unread_items]
    assert len(unread_items) == 2
    assert_problem(other_persons, 404, "notification_not_found")
    assert all_marked.json() == {"marked": 2}
    assert after_all == 0
    assert admins_unread == 3
    assert len(page.json()["items"]) == 2
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None


def test_another_orgs_control_never_notifies_this_orgs_members(
    settings: Settings, people: People, org: IssuedKey, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    globex = make_org(migrated_url, "globex")
    their_owner = People(migrated_url, globex.org_id).add(Role.OWNER)

    with hub_with(settings) as hub:
        hub.enqueue(CONTROL_CHANGED, control_notice(globex.org_id))
        hub.settle()
        ours, theirs = notifications(hub.client, owner), notifications(hub.client, their_owner)
        their_id = theirs[0]["id"]
        reaching = hub.client.post(f"/api/v1/notifications/{their_id}/read", headers=owner.headers)
        count = unread(hub.client, owner)

    assert ours == []
    assert count == 0
    assert len(theirs) == 1
    assert_problem(reaching, 404, "notification_not_found")


async def test_listeners_hear_each_notification_made_and_a_failing_one_harms_nothing(
    migrated_url: str, people: People, org: IssuedKey, tmp_path: Path
) -> None:
    owner = people.add(Role.OWNER)
    settings = Settings(database_url=migrated_url)
    engine = create_async_db_engine(migrated_url, tenant_isolation=True)
    runner = InProcessRunner()
    notifier = Notifier(engine, settings, FileMailer(settings.mail_from, tmp_path), runner)
    heard: list[tuple[uuid.UUID, uuid.UUID, NotificationView]] = []

    async def failing(org_id: uuid.UUID, user_id: uuid.UUID, view: NotificationView) -> None:
        raise RuntimeError("a broken listener")

    async def listener(org_id: uuid.UUID, user_id: uuid.UUID, view: NotificationView) -> None:
        heard.append((org_id, user_id, view))

    notifier.listen(failing)
    notifier.listen(listener)
    notifier.register()
    await runner.start()
    try:
        notice = control_notice(org.org_id)
        await runner.enqueue(CONTROL_CHANGED, notice)
        await runner.enqueue(CONTROL_CHANGED, notice)
        await runner.idle()
    finally:
        await runner.close()
        await engine.dispose()

    [(org_id, user_id, view)] = heard
    assert (org_id, user_id, view.kind) == (org.org_id, owner.user_id, "control.changed")
    assert len(mailbox(tmp_path)) == 1
    assert list(runner.failures) == []


def test_a_mail_outage_delays_only_the_mail_which_a_later_run_sends(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER, email="olga@acme.example")
    notice = control_notice(org.org_id)
    inbox = Inbox()
    closed = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there

    with (
        receiving([200]) as receiver,
        hub_with(settings, mail_url=closed, webhooks_allow_private=True) as hub,
    ):
        hook = hub.client.post(
            "/api/v1/webhooks",
            json={"url": receiver.url, "events": ["control.changed"]},
            headers=owner.headers,
        )
        assert hook.status_code == 201, hook.text
        hub.enqueue(CONTROL_CHANGED, notice)
        hub.settle()
        told = notifications(hub.client, owner)
        failed = [failure.task_name for failure in hub.runner.failures]
    delivered = receiver.wait_for(1)
    with (
        serving_smtp(inbox) as port,
        hub_with(settings, mail_url=f"smtp://127.0.0.1:{port}") as hub,
    ):
        hub.enqueue(CONTROL_CHANGED, notice)
        hub.settle()
        again = notifications(hub.client, owner)

    assert len(told) == 1
    assert len(delivered) == 1
    assert failed == [CONTROL_CHANGED]
    assert again == told
    assert inbox.next_message().rcpt_tos == ["olga@acme.example"]
    assert inbox.received.empty()


def test_a_new_notification_nudges_the_orgs_stream_without_saying_what_it_is(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    app = create_app(dataclasses.replace(settings, stream_max_age=600.0))
    with serving(app) as url, listening(url, org.key) as stream:
        before = stream.wait_for(last_of("notifications"), "the notifications snapshot")
        kill = {"scope": {"kind": "org"}, "state": "killed", "reason": "runaway spend"}
        response = httpx.post(f"{url}/api/v1/controls", json=kill, headers=owner.headers)
        assert response.status_code == 200, response.text
        nudge = stream.wait_for(
            lambda events: next(
                (e for e in events if e.event == "notifications" and e.id != before.id), None
            ),
            "a nudge after the control's notification",
        )
        with httpx.Client(base_url=url, headers=owner.headers) as http:
            count = http.get("/api/v1/notifications/unread-count").json()["unread"]

    assert json.loads(before.data) == {"latest": 0}
    assert json.loads(nudge.data)["latest"] > 0
    assert "runaway" not in nudge.data, "the org's stream carries no member's notification"
    assert count == 1
