"""The settings pages, through the app: each form does what its API route does (the same
service, so the same rules and audit entries), a secret is shown once, refusals are shown with
their code, and a role without the permission is refused (403) whatever the page shows."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from agentops_server.security.permissions import Role
from agentops_server.settings import Settings
from tests.server.mail import mailbox
from tests.server.principals import People, Person
from tests.web.people import signed_in

SECRET = re.compile(r'value="([^"]+)" readonly data-secret')
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def admin_api(people: People) -> Person:
    """An owner of the org acting through the JSON API, to check what the pages did."""
    return people.add(Role.OWNER)


def post(client: TestClient[Litestar], path: str, token: str, **fields: Any) -> Any:
    """Submit a form as a browser does (following the redirect to the page)."""
    return client.post(path, data={"_csrf_token": token, **fields})


def api(client: TestClient[Litestar], person: Person, path: str) -> Any:
    """``GET path`` of the JSON API as ``person``."""
    answer = client.get(path, headers=person.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_api_key_made_on_the_page_works_and_its_secret_is_shown_only_once(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)

    made = post(browser_client, "/settings/api-keys", token, name="ci agents", scope=["read"])

    assert made.status_code == 200, made.text
    secret = SECRET.search(made.text)
    assert secret, made.text
    key = secret[1]
    assert (
        browser_client.get("/api/v1/agents", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )
    listed = browser_client.get("/settings/api-keys").text
    assert 'data-api-key="ci agents"' in listed
    assert key not in listed
    assert "data-secret" not in listed


def test_rotating_a_key_shows_the_new_secret_once_and_revoking_ends_it(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    old = SECRET.search(
        post(browser_client, "/settings/api-keys", token, name="k", scope="read").text
    )
    assert old
    key_id = api(browser_client, admin_api, "/api/v1/api-keys")["items"][0]["id"]

    rotated = post(browser_client, f"/settings/api-keys/{key_id}/rotate", token, grace_seconds="0")

    new = SECRET.search(rotated.text)
    assert new
    assert new[1] != old[1]
    assert (
        browser_client.get(
            "/api/v1/agents", headers={"Authorization": f"Bearer {old[1]}"}
        ).status_code
        == 401
    )
    assert (
        browser_client.get(
            "/api/v1/agents", headers={"Authorization": f"Bearer {new[1]}"}
        ).status_code
        == 200
    )
    assert new[1] not in browser_client.get("/settings/api-keys").text

    new_id = next(
        item["id"]
        for item in api(browser_client, admin_api, "/api/v1/api-keys")["items"]
        if item["state"] == "active"
    )
    revoked = post(browser_client, f"/settings/api-keys/{new_id}/revoke", token)

    assert "The API key is revoked" in revoked.text
    assert (
        browser_client.get(
            "/api/v1/agents", headers={"Authorization": f"Bearer {new[1]}"}
        ).status_code
        == 401
    )


def test_a_key_with_a_scope_above_the_callers_role_is_refused_on_the_page(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)

    refused = post(browser_client, "/settings/api-keys", token, name="k", scope="no-such-scope")

    assert refused.status_code == 400
    assert 'data-code="unknown_scope"' in refused.text
    assert "data-secret" not in refused.text


def test_a_role_changed_on_the_page_is_the_members_role_and_is_in_the_audit_log(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    member = people.add(Role.MEMBER)

    changed = post(browser_client, f"/settings/members/{member.user_id}/role", token, role="admin")

    assert "The member&#39;s role is changed" in changed.text
    assert people.role_of(member.user_id) == "admin"
    audit = browser_client.get("/settings/audit", params={"action": "member."}).text
    assert 'data-action="member.role_changed"' in audit


def test_an_admin_cannot_make_an_owner_and_the_page_says_why(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.ADMIN)
    member = people.add(Role.MEMBER)

    refused = post(browser_client, f"/settings/members/{member.user_id}/role", token, role="owner")

    assert refused.status_code == 403
    assert 'data-code="role_escalation"' in refused.text
    assert people.role_of(member.user_id) == "member"


def test_a_member_removed_on_the_page_leaves_the_org(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    member = people.add(Role.VIEWER)

    removed = post(browser_client, f"/settings/members/{member.user_id}/remove", token)

    assert "The member is removed" in removed.text
    assert people.role_of(member.user_id) is None
    assert f'data-member="{member.email}"' not in removed.text


def test_an_invitation_is_emailed_listed_resent_and_revoked_from_the_page(
    browser_client: TestClient[Litestar],
    settings: Settings,
    people: People,
    admin_api: Person,
    mail_dir: Any,
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)

    sent = post(
        browser_client, "/settings/invitations", token, email="new@example.com", role="viewer"
    )

    assert "The invitation is sent by email" in sent.text
    assert 'data-invitation="new@example.com"' in sent.text
    assert [message["To"] for message in mailbox(mail_dir)] == ["new@example.com"]
    invitation = api(browser_client, admin_api, "/api/v1/invitations")["items"][0]
    assert invitation["role"] == "viewer"

    post(browser_client, f"/settings/invitations/{invitation['id']}/resend", token)
    assert len(mailbox(mail_dir)) == 2
    revoked = post(browser_client, f"/settings/invitations/{invitation['id']}/revoke", token)

    assert "The invitation is revoked" in revoked.text
    assert api(browser_client, admin_api, "/api/v1/invitations")["items"] == []
    actions = browser_client.get("/settings/audit", params={"action": "invitation."}).text
    for action in ("invitation.created", "invitation.resent", "invitation.revoked"):
        assert f'data-action="{action}"' in actions


def test_a_team_is_created_filled_renamed_and_deleted_on_the_page(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    token = signed_in(browser_client, settings, people, Role.ADMIN)
    member = people.add(Role.MEMBER)

    post(browser_client, "/settings/teams", token, name="Research")
    team = api(browser_client, admin_api, "/api/v1/teams")["items"][0]
    path = f"/settings/teams/{team['id']}"
    post(browser_client, f"{path}/members", token, user_id=str(member.user_id))
    renamed = post(browser_client, f"{path}/rename", token, name="Applied research")

    assert 'data-team="Applied research"' in renamed.text
    detail = api(browser_client, admin_api, f"/api/v1/teams/{team['id']}")
    assert (detail["name"], [p["email"] for p in detail["members"]]) == (
        "Applied research",
        [member.email],
    )
    post(browser_client, f"{path}/members/{member.user_id}/remove", token)
    assert api(browser_client, admin_api, f"/api/v1/teams/{team['id']}")["members"] == []
    deleted = post(browser_client, f"{path}/delete", token)
    assert "The team is deleted" in deleted.text
    assert api(browser_client, admin_api, "/api/v1/teams")["items"] == []


def test_a_team_lead_is_refused_creating_a_team_by_the_service(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.TEAM_LEAD)

    refused = post(browser_client, "/settings/teams", token, name="Mine")

    assert refused.status_code == 403
    assert 'data-code="admin_required"' in refused.text


def test_a_webhook_is_made_with_its_secret_once_edited_tested_and_deleted(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    url = "https://hooks.example.com/agentops"

    made = post(
        browser_client, "/settings/webhooks", token, url=url, event="budget.alert", enabled="yes"
    )

    secret = SECRET.search(made.text)
    assert secret
    hook = api(browser_client, admin_api, "/api/v1/webhooks")["items"][0]
    assert (hook["url"], hook["events"], hook["enabled"]) == (url, ["budget.alert"], True)
    path = f"/settings/webhooks/{hook['id']}"
    assert secret[1] not in browser_client.get(path).text
    post(browser_client, path, token, url=url + "/v2", event=["budget.alert", "approval.decided"])
    changed = api(browser_client, admin_api, f"/api/v1/webhooks/{hook['id']}")
    assert (changed["url"], changed["enabled"]) == (url + "/v2", False)
    tested = post(browser_client, f"{path}/test", token)
    assert 'data-delivery="webhook.test"' in tested.text
    post(browser_client, f"{path}/delete", token)
    assert api(browser_client, admin_api, "/api/v1/webhooks")["items"] == []


def test_a_webhook_to_a_private_address_is_refused_on_the_page(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)

    form = {"url": "http://127.0.0.1/x", "event": "approval.decided"}
    refused = post(browser_client, "/settings/webhooks", token, **form)

    assert refused.status_code == 400
    assert 'data-code="webhook_url_refused"' in refused.text


def test_an_org_price_is_added_changed_and_deleted_on_the_page(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    token = signed_in(browser_client, settings, people, Role.ADMIN)

    post(browser_client, "/settings/pricing", token, model="house-model", input="2", output="8")
    price = api(browser_client, admin_api, "/api/v1/pricing/overrides")["items"][0]
    assert (price["model"], price["kind"], price["input"], price["output"]) == (
        "house-model",
        "custom",
        "2",
        "8",
    )
    changed = post(
        browser_client,
        f"/settings/pricing/{price['id']}",
        token,
        model="house-model",
        input="3",
        output="9",
        reasoning="12",
    )
    assert "The price is changed" in changed.text
    now = api(browser_client, admin_api, f"/api/v1/pricing/overrides/{price['id']}")
    assert (now["input"], now["output"], now["reasoning"]) == ("3", "9", "12")
    post(browser_client, f"/settings/pricing/{price['id']}/delete", token)
    assert api(browser_client, admin_api, "/api/v1/pricing/overrides")["items"] == []


def test_a_per_token_price_is_refused_as_a_form_error_keeping_what_was_typed(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)

    refused = post(
        browser_client, "/settings/pricing", token, model="m1", input="0.000003", output="8"
    )

    assert refused.status_code == 400
    assert 'data-code="price_not_per_million"' in refused.text
    assert 'value="0.000003"' in refused.text


def test_the_org_profile_and_logo_change_on_the_page(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    org = api(browser_client, admin_api, "/api/v1/org")
    form = {key: str(org[key]) for key in ("name", "slug", "plan", "region", "retention_days")}

    saved = post(browser_client, "/settings", token, **{**form, "name": "Renamed", "plan": "team"})

    assert "The org&#39;s profile is saved" in saved.text
    after = api(browser_client, admin_api, "/api/v1/org")
    assert (after["name"], after["plan"]) == ("Renamed", "team")
    uploaded = browser_client.post(
        "/settings/logo",
        data={"_csrf_token": token},
        files={"logo": ("logo.png", PNG, "image/png")},
    )
    assert 'data-logo="uploaded"' in uploaded.text
    assert browser_client.get("/settings/logo").content == PNG
    removed = post(browser_client, "/settings/logo/remove", token)
    assert 'data-logo="none"' in removed.text


def test_an_admin_saving_the_profile_leaves_the_owners_plan_alone_and_cannot_change_it(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    token = signed_in(browser_client, settings, people, Role.ADMIN)
    org = api(browser_client, admin_api, "/api/v1/org")

    renamed = post(browser_client, "/settings", token, name="By the admin", slug=org["slug"])
    refused = post(browser_client, "/settings", token, name="By the admin", plan="enterprise")

    assert "The org&#39;s profile is saved" in renamed.text
    assert refused.status_code == 403
    assert 'data-code="owner_required"' in refused.text
    assert api(browser_client, admin_api, "/api/v1/org")["plan"] == org["plan"]


def test_the_audit_log_pages_with_its_cursor_and_keeps_the_filters(
    browser_client: TestClient[Litestar], settings: Settings, people: People, admin_api: Person
) -> None:
    signed_in(browser_client, settings, people, Role.OWNER)
    for number in range(52):
        made = browser_client.post(
            "/api/v1/teams", json={"name": f"team {number:02}"}, headers=admin_api.headers
        )
        assert made.status_code == 201, made.text

    first = browser_client.get("/settings/audit", params={"action": "team.created"}).text
    older = re.search(r'href="([^"]+)" rel="next"', first)

    assert first.count('data-action="team.created"') == 50
    assert older
    assert "action=team.created" in older[1]
    second = browser_client.get(older[1].replace("&amp;", "&")).text
    assert second.count('data-action="team.created"') == 2
    assert 'rel="next"' not in second


def test_a_bad_audit_filter_is_shown_with_its_code(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    signed_in(browser_client, settings, people, Role.OWNER)

    answer = browser_client.get("/settings/audit", params={"action": "NOT AN ACTION"})

    assert answer.status_code == 400
    assert 'data-code="invalid_action"' in answer.text


@pytest.mark.parametrize(
    ("role", "path"),
    [
        (Role.VIEWER, "/settings"),
        (Role.MEMBER, "/settings"),
        (Role.MEMBER, "/settings/members/{id}/role"),
        (Role.MEMBER, "/settings/invitations"),
        (Role.MEMBER, "/settings/api-keys"),
        (Role.MEMBER, "/settings/webhooks"),
        (Role.MEMBER, "/settings/pricing"),
        (Role.VIEWER, "/settings/teams"),
        (Role.TEAM_LEAD, "/settings/api-keys/{id}/revoke"),
    ],
)
def test_a_role_without_the_permission_is_refused_the_action(
    browser_client: TestClient[Litestar], settings: Settings, people: People, role: Role, path: str
) -> None:
    token = signed_in(browser_client, settings, people, role)

    refused = post(browser_client, path.format(id=uuid.uuid4()), token, name="x", role="owner")

    assert refused.status_code == 403
    assert 'data-code="permission_denied"' in refused.text


@pytest.mark.parametrize(
    ("role", "tabs"),
    [
        (Role.OWNER, ["Org", "Members", "Teams", "API keys", "Webhooks", "Pricing", "Audit log"]),
        (Role.MEMBER, ["Org", "Members", "Teams", "Pricing"]),
    ],
)
def test_the_settings_tabs_are_those_the_role_may_read(
    browser_client: TestClient[Litestar],
    settings: Settings,
    people: People,
    role: Role,
    tabs: list[str],
) -> None:
    signed_in(browser_client, settings, people, role)

    html = browser_client.get("/settings/pricing").text
    nav = html.split('aria-label="Settings"', 1)[1].split("</nav>", 1)[0]

    assert re.findall(r'<a href="[^"]+"[^>]*>([^<]+)</a>', nav) == tabs
    assert '<a href="/settings" aria-current="page">Settings</a>' in html
    assert ("Add a price" in html) == (role is Role.OWNER)
