"""``/api/v1/invitations``: inviting by email, listing, revoking, resending and accepting, on
SQLite and PostgreSQL. Emails go to ``.eml`` files, where the tests read the links."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from agentops_server import Settings
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.accounts import totp_code
from tests.server.api import Client, assert_problem, audit_entries, bearer, client_with, moment
from tests.server.conftest import PUBLIC_URL, make_org
from tests.server.database import execute, scalar, state
from tests.server.mail import invitation_token, mailbox
from tests.server.principals import PASSWORD, People, Person


def invite(client: Client, person: Person, email: str, role: str = "member", **more: Any) -> Any:
    return client.post(
        "/api/v1/invitations", json={"email": email, "role": role, **more}, headers=person.headers
    )


def accept(
    client: Client, token: str, *, headers: dict[str, str] | None = None, **more: Any
) -> Any:
    return client.post(
        "/api/v1/invitations/accept", json={"token": token, **more}, headers=headers or {}
    )


def last_token(mail_dir: Path) -> str:
    return invitation_token(mailbox(mail_dir)[-1])


# -- inviting ------------------------------------------------------------------------------------


def test_an_admin_invites_by_email_and_the_link_goes_only_to_that_mailbox(
    client: Client, admin: Person, mail_dir: Path
) -> None:
    response = invite(client, admin, "  Nina@Example.COM ", "team_lead")

    assert response.status_code == 201, response.text
    invitation = response.json()
    assert invitation["email"] == "nina@example.com"
    assert invitation["role"] == "team_lead"
    assert invitation["invited_by"] == str(admin.user_id)
    assert invitation["expired"] is False
    [message] = mailbox(mail_dir)
    assert message["To"] == "nina@example.com"
    assert "acme" in message["Subject"]
    token = invitation_token(message)
    assert token.startswith("inv_")
    assert f"{PUBLIC_URL}/invitations/accept?token={token}" in message.get_content()
    assert token not in response.text
    listed = client.get("/api/v1/invitations", headers=admin.headers)
    assert [item["email"] for item in listed.json()["items"]] == ["nina@example.com"]
    assert token not in listed.text
    [entry] = audit_entries(client, admin.headers, action="invitation.created")
    assert entry["after"]["role"] == "team_lead"
    assert token not in str(entry)


def test_the_token_is_stored_only_as_a_hash_and_expires_in_seven_days(
    client: Client, admin: Person, mail_dir: Path, migrated_url: str
) -> None:
    invite(client, admin, "nina@example.com")

    stored = scalar(migrated_url, "SELECT token_hash FROM invitations")
    token = last_token(mail_dir)
    assert token not in str(state(migrated_url))
    assert len(stored) == 64
    listed = client.get("/api/v1/invitations", headers=admin.headers).json()["items"][0]
    days = (moment(listed["expires_at"]) - moment(listed["created_at"])).total_seconds() / 86400
    assert days == pytest.approx(7, abs=0.01)


def test_inviting_an_address_with_a_pending_invitation_refreshes_it(
    client: Client, admin: Person, mail_dir: Path
) -> None:
    first = invite(client, admin, "nina@example.com", "viewer").json()
    old_token = last_token(mail_dir)

    second = invite(client, admin, "nina@example.com", "member").json()

    assert second["id"] == first["id"]
    assert second["role"] == "member"
    listed = client.get("/api/v1/invitations", headers=admin.headers).json()["items"]
    assert len(listed) == 1
    assert_problem(accept(client, old_token, password=PASSWORD), 400, "invalid_invitation")
    assert accept(client, last_token(mail_dir), password=PASSWORD).json()["role"] == "member"


def test_an_admin_cannot_invite_an_owner(
    client: Client, admin: Person, migrated_url: str, mail_dir: Path
) -> None:
    before = state(migrated_url)

    response = invite(client, admin, "nina@example.com", "owner")

    assert_problem(response, 403, "role_escalation")
    assert state(migrated_url) == before
    assert mailbox(mail_dir) == []


def test_an_owner_invites_an_owner(client: Client, owner: Person) -> None:
    response = invite(client, owner, "nina@example.com", "owner")

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("role", [Role.TEAM_LEAD, Role.MEMBER, Role.VIEWER])
def test_roles_below_admin_invite_no_one(
    client: Client, people: People, role: Role, mail_dir: Path
) -> None:
    response = invite(client, people.add(role), "nina@example.com", "owner")

    assert_problem(response, 403, "permission_denied")
    assert mailbox(mail_dir) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not an email", "role": "member"}, 400, "invalid_email"),
        ({"email": "nina@example.com", "role": "emperor"}, 400, "invalid_role"),
        ({"email": "nina@example.com"}, 400, "validation_error"),
        (
            {"email": "nina@example.com", "role": "member", "team_id": "nope"},
            400,
            "validation_error",
        ),
        ({"email": "nina@example.com", "role": "member", "extra": 1}, 400, "validation_error"),
        (
            {"email": "nina@example.com", "role": "member", "team_id": str(uuid.uuid4())},
            404,
            "team_not_found",
        ),
    ],
)
def test_bad_invitations_are_refused_precisely_and_send_nothing(
    client: Client,
    admin: Person,
    migrated_url: str,
    mail_dir: Path,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = state(migrated_url)

    response = client.post("/api/v1/invitations", json=body, headers=admin.headers)

    assert_problem(response, status, code)
    assert state(migrated_url) == before
    assert mailbox(mail_dir) == []


def test_inviting_a_member_is_refused(client: Client, admin: Person, people: People) -> None:
    people.add(Role.VIEWER, email="vic@acme.example")

    assert_problem(invite(client, admin, "VIC@acme.example"), 409, "already_member")


def test_another_orgs_team_cannot_be_named(
    client: Client, admin: Person, migrated_url: str
) -> None:
    foreign_team = People(migrated_url, make_org(migrated_url, "globex").org_id).team("ops")

    response = invite(client, admin, "nina@example.com", team_id=str(foreign_team))

    assert_problem(response, 404, "team_not_found")


def test_when_the_mail_server_refuses_nothing_is_invited(
    settings: Settings, migrated_url: str, admin: Person
) -> None:
    before = state(migrated_url)
    with client_with(settings, mail_url="smtp://127.0.0.1:1") as client:
        response = invite(client, admin, "nina@example.com")

    assert_problem(response, 503, "mail_unavailable")
    assert state(migrated_url) == before


# -- accepting -----------------------------------------------------------------------------------


def test_a_new_person_accepts_with_a_password_and_is_signed_in(
    client: Client, admin: Person, people: People, mail_dir: Path, migrated_url: str
) -> None:
    team = people.team("platform")
    invite(client, admin, "nina@example.com", "team_lead", team_id=str(team))

    response = accept(client, last_token(mail_dir), name="Nina", password=PASSWORD)

    assert response.status_code == 200, response.text
    accepted = response.json()
    assert (accepted["email"], accepted["role"], accepted["new_user"]) == (
        "nina@example.com",
        "team_lead",
        True,
    )
    assert accepted["team_id"] == str(team)
    nina = bearer(accepted["tokens"]["access_token"])
    me = client.get(f"/api/v1/members/{accepted['user_id']}", headers=nina)
    assert me.status_code == 200, me.text
    assert (me.json()["name"], me.json()["role"]) == ("Nina", "team_lead")
    assert [t["name"] for t in me.json()["teams"]] == ["platform"]
    assert scalar(migrated_url, "SELECT method FROM user_sessions WHERE method = 'invitation'")
    assert client.get("/api/v1/invitations", headers=admin.headers).json()["items"] == []
    [accepted_entry] = audit_entries(client, admin.headers, action="invitation.accepted")
    [added] = audit_entries(client, admin.headers, action="member.added")
    assert accepted_entry["actor_id"] == added["actor_id"] == accepted["user_id"]
    assert added["after"]["role"] == "team_lead"


def test_an_existing_user_signed_in_as_themselves_joins_with_a_session_there(
    client: Client, admin: Person, people: People, migrated_url: str, mail_dir: Path, org: IssuedKey
) -> None:
    elsewhere = People(migrated_url, make_org(migrated_url, "globex").org_id).add(
        Role.OWNER, email="nina@example.com", name="Nina"
    )
    invite(client, admin, "nina@example.com", "viewer")

    response = accept(client, last_token(mail_dir), headers=elsewhere.headers)

    assert response.status_code == 200, response.text
    accepted = response.json()
    assert accepted["new_user"] is False
    assert accepted["user_id"] == str(elsewhere.user_id)
    assert people.role_of(elsewhere.user_id) == "viewer"
    assert accepted["tokens"]["org_id"] == str(org.org_id)
    joined = client.get("/api/v1/auth/me", headers=bearer(accepted["tokens"]["access_token"]))
    assert joined.json()["org"]["role"] == "viewer"


def test_whoever_holds_the_link_cannot_make_an_existing_account_join_without_signing_in(
    client: Client, admin: Person, people: People, migrated_url: str, mail_dir: Path
) -> None:
    nina = People(migrated_url, make_org(migrated_url, "globex").org_id).add(
        Role.OWNER, email="nina@example.com"
    )
    invite(client, admin, "nina@example.com", "viewer")
    before = state(migrated_url)

    anonymous = accept(client, last_token(mail_dir))
    guessing = accept(client, last_token(mail_dir), password=PASSWORD)

    assert_problem(anonymous, 401, "sign_in_required")
    assert_problem(guessing, 401, "invalid_credentials")  # Nina has no password at all
    assert state(migrated_url) == before
    assert people.role_of(nina.user_id) is None


def test_another_account_cannot_accept_an_invitation_for_an_existing_account(
    client: Client, admin: Person, people: People, migrated_url: str, mail_dir: Path
) -> None:
    globex = People(migrated_url, make_org(migrated_url, "globex").org_id)
    nina = globex.add(Role.OWNER, email="nina@example.com")
    mallory = globex.add(Role.OWNER, email="mallory@example.com")
    some_key = bearer(make_org(migrated_url, "initech").key)
    invite(client, admin, "nina@example.com", "admin")
    before = state(migrated_url)

    as_mallory = accept(client, last_token(mail_dir), headers=mallory.headers)
    with_a_key = accept(client, last_token(mail_dir), headers=some_key)
    forged = accept(client, last_token(mail_dir), headers=bearer("not-a-token"))

    assert_problem(as_mallory, 403, "wrong_account")
    assert_problem(with_a_key, 401, "sign_in_required")
    assert_problem(forged, 401, "invalid_token")
    assert state(migrated_url) == before
    assert people.role_of(nina.user_id) is None
    assert people.role_of(mallory.user_id) is None


def test_an_account_in_no_org_proves_itself_with_its_password_and_second_factor(
    client: Client, owner: Person, people: People, migrated_url: str, mail_dir: Path
) -> None:
    nina = people.add(Role.MEMBER, email="nina@example.com", password=PASSWORD)
    secret = client.post("/api/v1/auth/mfa/totp", headers=nina.headers).json()["secret"]
    confirmed = client.post(
        "/api/v1/auth/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=nina.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    client.delete(f"/api/v1/members/{nina.user_id}", headers=owner.headers)
    invite(client, owner, "nina@example.com", "admin")
    token = last_token(mail_dir)

    without_code = accept(client, token, password=PASSWORD)
    wrong_code = accept(client, token, password=PASSWORD, code="000000")
    proven = accept(client, token, password=PASSWORD, code=totp_code(secret, steps_ahead=1))

    assert_problem(without_code, 400, "mfa_code_required")
    assert_problem(wrong_code, 401, "invalid_mfa_code")
    assert proven.status_code == 200, proven.text
    assert proven.json()["user_id"] == str(nina.user_id)
    assert proven.json()["tokens"]["access_token"]
    assert people.role_of(nina.user_id) == "admin"


def test_passwords_tried_on_an_invitation_are_limited_like_sign_ins(
    settings: Settings, admin: Person, mail_dir: Path
) -> None:
    with client_with(settings, rate_limit_login="2/minute") as client:
        invite(client, admin, "ines@example.com")
        token = last_token(mail_dir)

        tries = [accept(client, token, password=f"guess-{n}") for n in range(3)]

    for response in tries[:2]:
        assert_problem(response, 400, "weak_password")
    assert_problem(tries[2], 429, "too_many_attempts")


def test_a_new_person_needs_a_strong_password(
    client: Client, admin: Person, mail_dir: Path, migrated_url: str
) -> None:
    invite(client, admin, "nina@example.com")
    token = last_token(mail_dir)
    before = state(migrated_url)

    assert_problem(accept(client, token), 400, "password_required")
    assert_problem(accept(client, token, password="password"), 400, "weak_password")
    assert state(migrated_url) == before
    assert accept(client, token, password=PASSWORD).status_code == 200


def test_an_invitation_works_once(client: Client, admin: Person, mail_dir: Path) -> None:
    invite(client, admin, "nina@example.com")
    token = last_token(mail_dir)
    assert accept(client, token, password=PASSWORD).status_code == 200

    assert_problem(accept(client, token, password=PASSWORD), 409, "invitation_used")


def test_an_expired_invitation_is_refused(
    client: Client, admin: Person, mail_dir: Path, migrated_url: str
) -> None:
    invite(client, admin, "nina@example.com")
    execute(migrated_url, "UPDATE invitations SET expires_at = :past", past="2000-01-01 00:00:00")
    before = state(migrated_url)

    response = accept(client, last_token(mail_dir), password=PASSWORD)

    assert_problem(response, 410, "invitation_expired")
    assert state(migrated_url) == before
    assert client.get("/api/v1/invitations", headers=admin.headers).json()["items"][0]["expired"]


def test_a_revoked_invitation_is_refused_and_revoking_twice_changes_nothing(
    client: Client, admin: Person, mail_dir: Path
) -> None:
    invitation = invite(client, admin, "nina@example.com").json()

    first = client.delete(f"/api/v1/invitations/{invitation['id']}", headers=admin.headers)
    second = client.delete(f"/api/v1/invitations/{invitation['id']}", headers=admin.headers)

    assert (first.status_code, second.status_code) == (204, 204)
    assert_problem(
        accept(client, last_token(mail_dir), password=PASSWORD), 410, "invitation_revoked"
    )
    assert client.get("/api/v1/invitations", headers=admin.headers).json()["items"] == []
    assert len(audit_entries(client, admin.headers, action="invitation.revoked")) == 1


def test_an_accepted_invitation_can_be_neither_revoked_nor_resent(
    client: Client, admin: Person, mail_dir: Path
) -> None:
    invitation = invite(client, admin, "nina@example.com").json()
    accept(client, last_token(mail_dir), password=PASSWORD)

    revoked = client.delete(f"/api/v1/invitations/{invitation['id']}", headers=admin.headers)
    resent = client.post(f"/api/v1/invitations/{invitation['id']}/resend", headers=admin.headers)

    assert_problem(revoked, 409, "invitation_used")
    assert_problem(resent, 409, "invitation_used")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # another secret
        lambda token: "inv_" + uuid.uuid4().hex + token[36:],  # another org
        lambda token: token.rsplit("_", 1)[0],  # no secret
        lambda token: "x" * 4000,
        lambda token: "",
    ],
)
def test_a_tampered_or_unknown_token_is_refused(
    client: Client, admin: Person, mail_dir: Path, migrated_url: str, tamper: Any
) -> None:
    invite(client, admin, "nina@example.com")
    before = state(migrated_url)

    response = accept(client, tamper(last_token(mail_dir)), password=PASSWORD)

    assert_problem(response, 400, "invalid_invitation")
    assert state(migrated_url) == before


def test_accepting_with_a_malformed_body_is_refused(client: Client) -> None:
    assert_problem(client.post("/api/v1/invitations/accept", json={}), 400, "validation_error")
    assert_problem(
        client.post("/api/v1/invitations/accept", json={"token": "x", "admin": True}),
        400,
        "validation_error",
    )


def test_an_invited_person_who_joined_meanwhile_is_told_so(
    client: Client, admin: Person, people: People, mail_dir: Path, org: IssuedKey
) -> None:
    invite(client, admin, "nina@example.com")
    token = last_token(mail_dir)
    nina = people.add(Role.VIEWER, email="nina@example.com")

    assert_problem(accept(client, token, headers=nina.headers), 409, "already_member")
    assert client.get("/api/v1/agents", headers=nina.headers).status_code == 200


# -- resending and revoking ------------------------------------------------------------------------


def test_resending_sends_a_new_link_and_the_old_one_stops_working(
    client: Client, admin: Person, mail_dir: Path, migrated_url: str
) -> None:
    invitation = invite(client, admin, "nina@example.com").json()
    old_token = last_token(mail_dir)
    execute(migrated_url, "UPDATE invitations SET expires_at = :past", past="2000-01-01 00:00:00")

    response = client.post(f"/api/v1/invitations/{invitation['id']}/resend", headers=admin.headers)

    assert response.status_code == 200, response.text
    assert response.json()["expired"] is False
    new_token = last_token(mail_dir)
    assert new_token != old_token
    assert len(mailbox(mail_dir)) == 2
    assert_problem(accept(client, old_token, password=PASSWORD), 400, "invalid_invitation")
    assert accept(client, new_token, password=PASSWORD).status_code == 200
    [entry] = audit_entries(client, admin.headers, action="invitation.resent")
    assert entry["before"]["expires_at"] < entry["after"]["expires_at"]


def test_a_revoked_invitation_cannot_be_resent(
    client: Client, admin: Person, mail_dir: Path
) -> None:
    invitation = invite(client, admin, "nina@example.com").json()
    client.delete(f"/api/v1/invitations/{invitation['id']}", headers=admin.headers)

    response = client.post(f"/api/v1/invitations/{invitation['id']}/resend", headers=admin.headers)

    assert_problem(response, 410, "invitation_revoked")
    assert len(mailbox(mail_dir)) == 1


def test_an_admin_can_neither_revoke_nor_resend_an_owners_invitation(
    client: Client, owner: Person, admin: Person, migrated_url: str
) -> None:
    invitation = invite(client, owner, "nina@example.com", "owner").json()
    before = state(migrated_url)

    revoked = client.delete(f"/api/v1/invitations/{invitation['id']}", headers=admin.headers)
    resent = client.post(f"/api/v1/invitations/{invitation['id']}/resend", headers=admin.headers)

    assert_problem(revoked, 403, "role_escalation")
    assert_problem(resent, 403, "role_escalation")
    assert state(migrated_url) == before


def test_another_orgs_invitations_are_out_of_reach(
    client: Client, admin: Person, migrated_url: str
) -> None:
    globex = make_org(migrated_url, "globex")
    their_admin = People(migrated_url, globex.org_id).add(Role.ADMIN)
    theirs = invite(client, their_admin, "nina@example.com").json()
    before = state(migrated_url)

    listed = client.get("/api/v1/invitations", headers=admin.headers).json()["items"]
    revoked = client.delete(f"/api/v1/invitations/{theirs['id']}", headers=admin.headers)
    resent = client.post(f"/api/v1/invitations/{theirs['id']}/resend", headers=admin.headers)

    assert listed == []
    assert_problem(revoked, 404, "invitation_not_found")
    assert_problem(resent, 404, "invitation_not_found")
    assert state(migrated_url) == before
