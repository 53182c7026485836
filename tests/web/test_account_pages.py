"""The account pages through the real app: a forgotten password (the emailed link leads to the
reset page), two-factor enrolment, sessions and the password, invitation acceptance (signed in
and as a new person), OAuth sign-in ending in a page session, notifications, and the demo's
one-time sign-in link."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select

from agentops_server import create_app
from agentops_server.db.models import Membership, Notification, User
from agentops_server.demo import demo_sign_in_link
from agentops_server.security.permissions import Role
from agentops_server.services.identity.sessions import TokenPair
from agentops_server.services.identity.sign_in_links import issue_sign_in_link
from agentops_server.settings import Settings
from agentops_server.web.sessions import COOKIE, session_cookie
from tests.server.conftest import PUBLIC_URL, make_org, served_provider
from tests.server.database import direct_session
from tests.server.mail import INVITATION_TOKEN, mailbox, reset_token_in
from tests.server.oidc_provider import LocalIdentityProvider
from tests.server.principals import PASSWORD, People, Person
from tests.server.test_oauth import providers_json
from tests.web.people import CSRF_INPUT

__all__ = ["served_provider"]

NEW_PASSWORD = "a-brand-new-passphrase-42"


def csrf(client: TestClient[Litestar], path: str = "/sign-in") -> str:
    """The CSRF token of the forms of the page at ``path``."""
    found = CSRF_INPUT.search(client.get(path).text)
    assert found, path
    return found[1]


def sign_in_as(client: TestClient[Litestar], settings: Settings, person: Person) -> None:
    """``person``'s page session on ``client`` (the cookie of their hub session)."""
    tokens = TokenPair("", "", 0, person_org(settings, person), person.user_id, person.session_id)
    client.cookies.set(
        COOKIE, session_cookie(settings, tokens).value or "", domain="hub.example.com"
    )


def person_org(settings: Settings, person: Person) -> uuid.UUID:
    with direct_session(settings.database_url) as session:
        return session.scalars(
            select(Membership.org_id).where(Membership.user_id == person.user_id)
        ).one()


def post(client: TestClient[Litestar], path: str, **form: str) -> httpx.Response:
    """Submit a form to ``path`` with the pages' CSRF token, not following redirects."""
    return client.post(path, data={"_csrf_token": csrf(client), **form}, follow_redirects=False)


@pytest.fixture
def member(people: People) -> Person:
    return people.add(Role.MEMBER, password=PASSWORD)


@pytest.fixture
def owner(people: People) -> Person:
    return people.add(Role.OWNER, password=PASSWORD)


# --- a forgotten password ---------------------------------------------------------------------


def test_a_forgotten_password_is_reset_through_the_emailed_link_to_the_reset_page(
    browser_client: TestClient[Litestar], member: Person, mail_dir: Path
) -> None:
    asked = post(browser_client, "/forgot-password", email=member.email)
    stranger = post(browser_client, "/forgot-password", email="nobody@example.com")

    assert asked.status_code == stranger.status_code == 200
    assert "If an account has this email, a reset link is on its way." in asked.text
    assert asked.text.count("data-reset-requested") == stranger.text.count("data-reset-requested")
    [message] = mailbox(mail_dir)
    token = reset_token_in(message)
    assert f"{PUBLIC_URL}/reset-password?token={token}" in message.get_content()
    link = urlsplit(f"{PUBLIC_URL}/reset-password?token={token}")
    form = browser_client.get(f"{link.path}?{link.query}")
    assert f'name="token" value="{token}"' in form.text

    reset = post(browser_client, "/reset-password", token=token, new_password=NEW_PASSWORD)
    again = post(browser_client, "/reset-password", token=token, new_password=NEW_PASSWORD)

    assert (reset.status_code, reset.headers["location"]) == (303, "/sign-in?done=password_reset")
    assert "Your password is changed" in browser_client.get(reset.headers["location"]).text
    assert 'data-code="reset_token_used"' in again.text
    signed_in = post(browser_client, "/sign-in", email=member.email, password=NEW_PASSWORD)
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/")


# --- two-factor authentication, sessions, the password ----------------------------------------


def test_an_authenticator_app_is_enrolled_with_a_code_and_the_recovery_codes_are_shown_once(
    browser_client: TestClient[Litestar], settings: Settings, member: Person
) -> None:
    sign_in_as(browser_client, settings, member)
    assert 'data-mfa-state="off"' in browser_client.get("/account/security").text

    started = post(browser_client, "/account/security/totp")
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", started.text)
    assert secret
    assert "otpauth://totp/" in started.text
    assert "<svg" in started.text  # the QR code, inline
    wrong = post(browser_client, "/account/security/totp/confirm", code="000000")
    confirmed = post(
        browser_client,
        "/account/security/totp/confirm",
        code=pyotp.TOTP(secret[1]).now(),
    )

    assert 'data-code="invalid_mfa_code"' in wrong.text
    assert confirmed.status_code == 200
    codes = re.findall(r"<li><code>([^<]+)</code></li>", confirmed.text)
    assert len(codes) == 10
    later = browser_client.get("/account/security").text
    assert 'data-mfa-state="on"' in later
    assert codes[0] not in later


def test_two_factor_is_turned_off_with_the_password_only(
    browser_client: TestClient[Litestar], settings: Settings, member: Person
) -> None:
    sign_in_as(browser_client, settings, member)
    started = post(browser_client, "/account/security/totp")
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", started.text)
    assert secret
    code = pyotp.TOTP(secret[1]).now()
    post(browser_client, "/account/security/totp/confirm", code=code)

    refused = post(browser_client, "/account/security/totp/disable", password="wrong-password")
    turned_off = post(browser_client, "/account/security/totp/disable", password=PASSWORD)

    assert 'data-code="invalid_password"' in refused.text
    assert turned_off.headers["location"] == "/account/security?done=mfa_disabled"
    assert 'data-mfa-state="off"' in browser_client.get("/account/security").text


def test_another_session_is_listed_and_signed_out_from_the_security_page(
    browser_client: TestClient[Litestar], settings: Settings, member: Person
) -> None:
    sign_in_as(browser_client, settings, member)
    other = browser_client.post(
        "/api/v1/auth/login", json={"email": member.email, "password": PASSWORD}
    ).json()
    listed = browser_client.get("/account/security").text
    assert f'data-session="{other["session_id"]}"' in listed
    assert f'data-session="{member.session_id}"' in listed

    ended = post(browser_client, f"/account/security/sessions/{other['session_id']}/revoke")

    assert ended.headers["location"] == "/account/security?done=session_revoked"
    bearer = {"Authorization": f"Bearer {other['access_token']}"}
    assert browser_client.get("/api/v1/auth/sessions", headers=bearer).status_code == 401
    assert browser_client.get("/account/security").status_code == 200


def test_the_password_is_changed_with_the_current_one(
    browser_client: TestClient[Litestar], settings: Settings, member: Person
) -> None:
    sign_in_as(browser_client, settings, member)

    wrong = post(
        browser_client,
        "/account/security/password",
        current_password="not-it",
        new_password=NEW_PASSWORD,
    )
    changed = post(
        browser_client,
        "/account/security/password",
        current_password=PASSWORD,
        new_password=NEW_PASSWORD,
    )

    assert 'data-code="invalid_password"' in wrong.text
    assert changed.headers["location"] == "/account/security?done=password_changed"
    login = {"email": member.email, "password": NEW_PASSWORD}
    assert browser_client.post("/api/v1/auth/login", json=login).status_code == 200


# --- invitations ------------------------------------------------------------------------------


def invite(client: TestClient[Litestar], owner: Person, email: str, mail_dir: Path) -> str:
    """Invite ``email`` as a member through the API; the link's path and query in the email."""
    made = client.post(
        "/api/v1/invitations", json={"email": email, "role": "member"}, headers=owner.headers
    )
    assert made.status_code == 201, made.text
    message = mailbox(mail_dir)[-1]
    match = re.search(
        rf"{re.escape(PUBLIC_URL)}(/invitations/accept\?token=inv_\S+)", message.get_content()
    )
    assert match, message.get_content()
    assert INVITATION_TOKEN.search(match[1])
    return match[1]


def test_a_new_person_accepts_an_invitation_with_a_new_account_and_joins_the_org_only(
    browser_client: TestClient[Litestar], settings: Settings, owner: Person, mail_dir: Path
) -> None:
    link = invite(browser_client, owner, "newcomer@example.com", mail_dir)
    token = link.split("token=", 1)[1]
    form = browser_client.get(link)
    assert "Create my account and join" in form.text

    accepted = post(
        browser_client, "/invitations/accept", token=token, name="Nia", password=PASSWORD
    )

    assert accepted.headers["location"] == "/?done=invitation_accepted"
    assert "You joined the org." in browser_client.get(accepted.headers["location"]).text
    with direct_session(settings.database_url) as session:
        newcomer = session.scalars(select(User.id).where(User.email == "newcomer@example.com"))
        orgs = session.scalars(
            select(Membership.org_id).where(Membership.user_id == newcomer.one())
        ).all()
    assert orgs == [person_org(settings, owner)]


def test_a_signed_in_person_accepts_an_invitation_into_another_org(
    browser_client: TestClient[Litestar],
    settings: Settings,
    migrated_url: str,
    owner: Person,
    mail_dir: Path,
) -> None:
    elsewhere = People(migrated_url, make_org(migrated_url, "globex").org_id)
    guest = elsewhere.add(Role.MEMBER, password=PASSWORD)
    link = invite(browser_client, owner, guest.email, mail_dir)
    sign_in_as(browser_client, settings, guest)
    assert f"You are signed in as <strong>{guest.email}</strong>" in browser_client.get(link).text

    accepted = post(browser_client, "/invitations/accept", token=link.split("token=")[1])

    assert accepted.headers["location"] == "/?done=invitation_accepted"
    page = browser_client.get("/controls").text
    assert 'title="Your org">' not in page  # two orgs now: the switcher
    assert re.search(r'<option value="acme" selected>', page)


def test_a_person_signed_in_as_another_account_is_told_to_sign_out_to_accept(
    browser_client: TestClient[Litestar],
    settings: Settings,
    migrated_url: str,
    owner: Person,
    mail_dir: Path,
) -> None:
    link = invite(browser_client, owner, "someone-new@example.com", mail_dir)
    stranger = People(migrated_url, make_org(migrated_url, "initech").org_id).add(Role.MEMBER)
    sign_in_as(browser_client, settings, stranger)

    refused = post(browser_client, "/invitations/accept", token=link.split("token=")[1])

    assert 'data-code="password_required"' in refused.text
    assert "data-other-account" in refused.text
    assert _user_id(settings, "someone-new@example.com") is None


def _user_id(settings: Settings, email: str) -> uuid.UUID | None:
    with direct_session(settings.database_url) as session:
        return session.scalar(select(User.id).where(User.email == email))


# --- OAuth ------------------------------------------------------------------------------------


@pytest.fixture
def oauth_client(
    settings: Settings, served_provider: LocalIdentityProvider
) -> Iterator[TestClient[Litestar]]:
    served_provider.reset()
    configured = dataclasses.replace(settings, oauth_providers=providers_json(served_provider))
    with TestClient(create_app(configured), base_url=PUBLIC_URL) as client:
        yield client


def test_signing_in_with_a_provider_from_the_sign_in_page_ends_in_a_page_session(
    oauth_client: TestClient[Litestar],
) -> None:
    sign_in_page = oauth_client.get("/sign-in?next=/approvals").text
    assert re.search(r'href="/sign-in/oauth/corp\?next=/approvals"[^>]*>Corp SSO<', sign_in_page)
    assert "Corp SSO" in oauth_client.get("/sign-up").text

    started = oauth_client.get("/sign-in/oauth/corp?next=/approvals", follow_redirects=False)
    at_provider = httpx.get(started.headers["location"], follow_redirects=False)
    back = urlsplit(at_provider.headers["location"])
    assert (
        f"{back.scheme}://{back.netloc}{back.path}" == f"{PUBLIC_URL}/sign-in/oauth/corp/callback"
    )
    finished = oauth_client.get(f"{back.path}?{back.query}", follow_redirects=False)
    replayed = oauth_client.get(f"{back.path}?{back.query}", follow_redirects=False)

    assert (finished.status_code, finished.headers["location"]) == (303, "/approvals")
    assert COOKIE in oauth_client.cookies
    assert "ada@example.com" in oauth_client.get("/approvals").text
    assert 'data-code="invalid_oauth_state"' in replayed.text


# --- notifications ----------------------------------------------------------------------------


def notify(settings: Settings, person: Person, title: str) -> uuid.UUID:
    """A notification of ``person``'s, made straight in the database."""
    made = uuid.uuid4()
    with direct_session(settings.database_url) as session:
        session.add(
            Notification(
                org_id=person_org(settings, person),
                id=made,
                user_id=person.user_id,
                kind="control.changed",
                title=title,
                body=f"{title}: details",
                data={},
                created_at=dt.datetime.now(dt.UTC),
            )
        )
        session.commit()
    return made


def test_the_bell_counts_the_unread_and_the_page_marks_them_read(
    browser_client: TestClient[Litestar], settings: Settings, member: Person
) -> None:
    sign_in_as(browser_client, settings, member)
    first = notify(settings, member, "Agents paused")
    notify(settings, member, "Org killed")
    page = browser_client.get("/agents").text
    assert re.search(r"data-unread-count>2<", page)

    one = post(browser_client, f"/notifications/{first}/read")
    listed = browser_client.get("/notifications").text
    assert one.headers["location"] == "/notifications?done=notifications_read"
    assert re.search(r"data-unread-count>1<", listed)
    assert listed.count(" data-unread>") == 1
    assert "Agents paused" in listed
    assert "Org killed" in listed

    post(browser_client, "/notifications/read-all")
    assert re.search(r"data-unread-count hidden>0<", browser_client.get("/controls").text)


# --- the demo's sign-in link ------------------------------------------------------------------


@pytest.fixture
def demo_client(settings: Settings) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(dataclasses.replace(settings, demo=True)), base_url=PUBLIC_URL) as c:
        yield c


def test_the_demo_sign_in_link_signs_in_as_the_owner_once_and_not_twice(
    demo_client: TestClient[Litestar], settings: Settings, migrated_url: str
) -> None:
    org = make_org(migrated_url, "demo")  # an org with no owner, as the demo makes it
    link = demo_sign_in_link(
        dataclasses.replace(settings, demo=True), PUBLIC_URL, org.org_id, "demo"
    )
    path = link.removeprefix(PUBLIC_URL)
    token = path.split("token=", 1)[1]
    assert "Sign in to the demo" in demo_client.get(path).text

    used = post(demo_client, "/sign-in/link", token=token)
    shell = demo_client.get("/controls").text
    demo_client.cookies.clear()
    again = post(demo_client, "/sign-in/link", token=token)

    assert (used.status_code, used.headers["location"]) == (303, "/")
    assert "demo-owner+demo@example.com · owner" in shell
    assert again.status_code == 400
    assert 'data-code="sign_in_link_used"' in again.text
    assert COOKIE not in demo_client.cookies


def test_a_hub_not_in_demo_mode_refuses_sign_in_links(
    browser_client: TestClient[Litestar], settings: Settings, owner: Person
) -> None:
    token = issue_sign_in_link(settings, owner.user_id, person_org(settings, owner))

    refused = post(browser_client, "/sign-in/link", token=token)

    assert refused.status_code == 403
    assert 'data-code="sign_in_links_off"' in refused.text
