"""Webhooks: owners and admins manage them; each event a webhook subscribed to reaches a real
HTTP server signed with its secret, retried with backoff after a failure, recorded; addresses
inside the hub's network are refused unless the hub allows them, at creation and on the
resolved address at delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from agentops_server import Settings
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from agentops_server.services.notifications.announcements import CONTROL_CHANGED
from tests.server.api import Client, assert_problem, audit_entries
from tests.server.conftest import make_org
from tests.server.database import scalar
from tests.server.derived import Hub, control_notice, hub_with
from tests.server.principals import People, Person
from tests.server.webhook_receiver import Delivered, receiving

ALLOWED = {"webhooks_allow_private": True, "webhooks_backoff": 0}
"""The local receiver listens on 127.0.0.1: only a hub that allows private addresses reaches
it."""


def create(client: Client, person: Person, url: str, **fields: Any) -> dict[str, Any]:
    body = {"url": url, "events": ["control.changed"], **fields}
    response = client.post("/api/v1/webhooks", json=body, headers=person.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(client: Client, person: Person, webhook_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=person.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def settled(client: Client, person: Person, webhook_id: str) -> list[dict[str, Any]]:
    """The webhook's deliveries once none is pending any more (the last attempt is recorded just
    after the receiver answered it); fails after 10 s."""
    deadline = time.monotonic() + 10.0
    while True:
        items = deliveries(client, person, webhook_id)
        if all(item["status"] != "pending" for item in items):
            return items
        assert time.monotonic() < deadline, f"still pending: {items}"
        time.sleep(0.02)


def verified(secret: str, request: Delivered, tolerance: int = 300) -> dict[str, Any]:
    """The body of ``request`` once its signature is checked as docs/notifications.md tells
    receivers to."""
    fields = dict(part.split("=", 1) for part in request.headers["AgentOps-Signature"].split(","))
    timestamp = int(fields["t"])
    assert abs(time.time() - timestamp) <= tolerance
    signed = f"{timestamp}.".encode() + request.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    payload: dict[str, Any] = json.loads(request.body)
    return payload


def announce(hub: Hub, org: IssuedKey, **notice: Any) -> None:
    hub.enqueue(CONTROL_CHANGED, control_notice(org.org_id, **notice))
    hub.settle()


def test_the_secret_is_shown_once_and_changes_are_audited_without_it(
    client: Client, owner: Person
) -> None:
    created = create(client, owner, "https://hooks.example.com/agentops?token=s3cr3t")
    listed = client.get("/api/v1/webhooks", headers=owner.headers).json()["items"]
    one = client.get(f"/api/v1/webhooks/{created['id']}", headers=owner.headers).json()
    changed = client.patch(
        f"/api/v1/webhooks/{created['id']}", json={"enabled": False}, headers=owner.headers
    )
    deleted = client.delete(f"/api/v1/webhooks/{created['id']}", headers=owner.headers)
    gone = client.get(f"/api/v1/webhooks/{created['id']}", headers=owner.headers)
    entries = audit_entries(client, owner.headers, action="webhook.")

    assert created["secret"].startswith("whsec_")
    assert "secret" not in listed[0]
    assert "secret" not in one
    assert changed.json()["enabled"] is False
    assert deleted.status_code == 204
    assert_problem(gone, 404, "webhook_not_found")
    assert created["secret"] not in json.dumps(entries)
    assert [e["action"] for e in entries] == [
        "webhook.deleted",
        "webhook.updated",
        "webhook.created",
    ]
    assert entries[1]["before"]["enabled"] is True
    assert entries[1]["after"]["enabled"] is False
    assert "s3cr3t" not in json.dumps(entries)  # a URL's query may be a credential
    assert entries[2]["after"]["host"] == "hooks.example.com"


def test_the_stored_secret_is_not_the_secret(
    client: Client, owner: Person, migrated_url: str
) -> None:
    created = create(client, owner, "https://hooks.example.com/")

    stored = scalar(migrated_url, "SELECT secret FROM webhooks")

    assert created["secret"] not in stored


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8080/hook", "webhook_url_refused"),
        ("http://10.1.2.3/hook", "webhook_url_refused"),
        ("http://169.254.169.254/latest/meta-data", "webhook_url_refused"),
        ("http://[::1]/hook", "webhook_url_refused"),
        ("http://[::ffff:192.168.0.1]/hook", "webhook_url_refused"),
        ("http://224.0.0.1/hook", "webhook_url_refused"),
        ("http://0.0.0.0/hook", "webhook_url_refused"),
        ("ftp://hooks.example.com/", "invalid_webhook_url"),
        ("https://user:pass@hooks.example.com/", "invalid_webhook_url"),
        ("hooks.example.com/hook", "invalid_webhook_url"),
    ],
)
def test_a_url_inside_the_hubs_network_or_not_http_is_refused_at_creation(
    client: Client, owner: Person, url: str, code: str
) -> None:
    response = client.post(
        "/api/v1/webhooks", json={"url": url, "events": ["control.changed"]}, headers=owner.headers
    )

    assert_problem(response, 400, code)


def test_events_must_be_named_and_known(client: Client, owner: Person) -> None:
    url = "https://hooks.example.com/"
    unknown = client.post(
        "/api/v1/webhooks", json={"url": url, "events": ["run.ended"]}, headers=owner.headers
    )
    empty = client.post("/api/v1/webhooks", json={"url": url, "events": []}, headers=owner.headers)

    assert_problem(unknown, 400, "unknown_event")
    assert_problem(empty, 400, "no_events")


def test_a_control_change_reaches_a_subscribed_webhook_signed_and_is_recorded(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    with receiving([200]) as receiver, hub_with(settings, **ALLOWED) as hub:
        hook = create(hub.client, owner, receiver.url)
        create(hub.client, owner, receiver.url + "/disabled", enabled=False)
        announce(hub, org, action="pause", scope={"kind": "team", "value": "payments"})
        [request] = receiver.wait_for(1)
        [delivery] = settled(hub.client, owner, hook["id"])

    payload = verified(hook["secret"], request)
    assert request.path == "/hooks/agentops"
    assert request.headers["AgentOps-Event"] == "control.changed"
    assert request.headers["AgentOps-Delivery"] == delivery["id"]
    assert request.headers["Content-Type"] == "application/json"
    assert payload["type"] == "control.changed"
    assert payload["org_id"] == str(org.org_id)
    assert payload["data"]["action"] == "pause"
    assert payload["data"]["scope"] == {"kind": "team", "value": "payments"}
    assert len(receiver.received) == 1  # the disabled webhook got nothing
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert delivery["payload"] == payload


def test_a_delivery_answered_500_is_retried_after_a_backoff_then_delivered(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    with (
        receiving([500, 200]) as receiver,
        hub_with(settings, **{**ALLOWED, "webhooks_backoff": 1}) as hub,
    ):
        hook = create(hub.client, owner, receiver.url)
        announce(hub, org)
        first, second = receiver.wait_for(2)
        [delivery] = settled(hub.client, owner, hook["id"])

    assert verified(hook["secret"], first) == verified(hook["secret"], second)
    assert first.headers["AgentOps-Delivery"] == second.headers["AgentOps-Delivery"]
    assert second.at - first.at >= 1.0
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 2
    assert delivery["last_status_code"] == 200
    assert delivery["next_attempt_at"] is None


def test_a_delivery_is_failed_after_its_last_attempt(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    with (
        receiving([503]) as receiver,
        hub_with(settings, **{**ALLOWED, "webhooks_attempts": 3}) as hub,
    ):
        hook = create(hub.client, owner, receiver.url)
        announce(hub, org)
        [delivery] = deliveries(hub.client, owner, hook["id"])

    assert len(receiver.received) == 3
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 503
    assert delivery["last_error"] == "the receiver answered 503"


def test_a_redirect_is_not_followed(settings: Settings, people: People, org: IssuedKey) -> None:
    owner = people.add(Role.OWNER)
    with (
        receiving([302]) as receiver,
        hub_with(settings, **{**ALLOWED, "webhooks_attempts": 1}) as hub,
    ):
        hook = create(hub.client, owner, receiver.url)
        announce(hub, org)
        [delivery] = deliveries(hub.client, owner, hook["id"])

    assert [r.path for r in receiver.received] == ["/hooks/agentops"]
    assert delivery["status"] == "failed"
    assert delivery["last_status_code"] == 302


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(
    settings: Settings, people: People, org: IssuedKey
) -> None:
    owner = people.add(Role.OWNER)
    with receiving([200]) as receiver, hub_with(settings) as hub:
        url = f"http://localhost:{receiver.port}/hooks/agentops"  # a name: passes creation
        hook = create(hub.client, owner, url)
        announce(hub, org)
        [delivery] = deliveries(hub.client, owner, hook["id"])

    assert receiver.received == []
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 1
    assert delivery["last_error"].startswith("address refused: localhost resolves to")


def test_a_test_event_is_delivered_to_a_webhook_whatever_it_subscribed_to(
    settings: Settings, people: People
) -> None:
    admin = people.add(Role.ADMIN)
    with receiving([200]) as receiver, hub_with(settings, **ALLOWED) as hub:
        hook = create(hub.client, admin, receiver.url)
        sent = hub.client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=admin.headers)
        hub.settle()
        [request] = receiver.wait_for(1)
        [delivery] = settled(hub.client, admin, hook["id"])

    assert sent.status_code == 202
    assert sent.json()["status"] == "pending"
    assert verified(hook["secret"], request)["type"] == "webhook.test"
    assert delivery["id"] == sent.json()["id"]
    assert delivery["status"] == "delivered"


def test_another_orgs_event_never_reaches_this_orgs_webhooks(
    settings: Settings, people: People, migrated_url: str
) -> None:
    owner = people.add(Role.OWNER)
    globex = make_org(migrated_url, "globex")
    with receiving([200]) as receiver, hub_with(settings, **ALLOWED) as hub:
        hook = create(hub.client, owner, receiver.url)
        announce(hub, globex)
        found = deliveries(hub.client, owner, hook["id"])
        their_owner = People(migrated_url, globex.org_id).add(Role.OWNER)
        reaching = hub.client.get(f"/api/v1/webhooks/{hook['id']}", headers=their_owner.headers)
        listed = hub.client.get("/api/v1/webhooks", headers=their_owner.headers).json()["items"]

    assert receiver.received == []
    assert found == []
    assert_problem(reaching, 404, "webhook_not_found")
    assert listed == []
