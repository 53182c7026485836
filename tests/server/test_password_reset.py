"""Password reset by email, on SQLite and PostgreSQL, with the token read from a real delivery:
``.eml`` files of the file mailer, or a local SMTP server (aiosmtpd).

Specification: asking always answers 202 and mails only existing accounts; the emailed token
works once, within an hour, and only while it is the newest; using it sets the password and
ends every session of the user in every org; every refusal changes nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from agentops_server import Settings
from agentops_server.security.permissions import Role
from tests.server.accounts import AUTH, login, me, signup, signup_in_two_orgs
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.conftest import PUBLIC_URL
from tests.server.database import execute, rows
from tests.server.mail import Inbox, mailbox, reset_token_in, serving_smtp
from tests.server.principals import PASSWORD

NEW_PASSWORD = "Brand-new-passphrase-7"


def forgot(client: Client, email: str) -> Any:
    return client.post(f"{AUTH}/password/forgot", json={"email": email})


def reset(client: Client, token: str, password: str = NEW_PASSWORD) -> Any:
    return client.post(f"{AUTH}/password/reset", json={"token": token, "new_password": password})


def emailed_token(client: Client, mail_dir: Path, email: str) -> str:
    """Ask for a reset of ``email`` and read the token from the newest message."""
    assert forgot(client, email).status_code == 202
    return reset_token_in(mailbox(mail_dir)[-1])


def password_hash(database_url: str) -> str:
    [(stored,)] = rows(database_url, "SELECT password_hash FROM users")
    return str(stored)


def test_asking_for_a_reset_mails_a_link_with_a_single_use_token(
    client: Client, mail_dir: Path
) -> None:
    ada = signup(client)

    response = forgot(client, ada["email"].upper())

    assert response.status_code == 202, response.text
    [message] = mailbox(mail_dir)
    assert message["To"] == ada["email"]
    assert message["Subject"] == "Reset your AgentOps Hub password"
    token = reset_token_in(message)
    assert token.startswith(f"pr_{ada['user_id'].hex}_")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"{PUBLIC_URL}/reset-password?token={token}" in text


def test_asking_for_an_unknown_or_invalid_email_answers_the_same_and_mails_nothing(
    client: Client, mail_dir: Path, migrated_url: str
) -> None:
    ada = signup(client)
    existing = forgot(client, ada["email"])

    for email in ("nobody@example.com", "not an email"):
        response = forgot(client, email)
        assert response.status_code == 202
        assert response.json() == existing.json()
    assert [message["To"] for message in mailbox(mail_dir)] == [ada["email"]]
    assert rows(migrated_url, "SELECT count(*) FROM password_resets") == [(1,)]


def test_a_reset_sets_the_password_and_ends_every_session_in_every_org(
    client: Client, mail_dir: Path, migrated_url: str
) -> None:
    ada, other = signup_in_two_orgs(client, migrated_url, Role.MEMBER)
    elsewhere = login(client, ada["email"], org="elsewhere")
    token = emailed_token(client, mail_dir, ada["email"])

    response = reset(client, token)

    assert response.status_code == 200, response.text
    assert response.json() == {"sessions_revoked": 3}
    for headers in (ada["headers"], bearer(elsewhere["access_token"])):
        assert_problem(client.get(f"{AUTH}/me", headers=headers), 401, "session_revoked")
    old = client.post(f"{AUTH}/login", json={"email": ada["email"], "password": PASSWORD})
    assert_problem(old, 401, "invalid_credentials")
    login(client, ada["email"], NEW_PASSWORD)
    me(client, other["headers"])  # the other org's owner is untouched
    logged = rows(
        migrated_url, "SELECT org_id, after FROM audit_log WHERE action = 'user.password_reset'"
    )
    assert {uuid.UUID(str(org)) for org, _ in logged} == {ada["org_id"], other["org_id"]}


def test_a_reset_token_works_once(client: Client, mail_dir: Path, migrated_url: str) -> None:
    ada = signup(client)
    token = emailed_token(client, mail_dir, ada["email"])
    assert reset(client, token).status_code == 200
    after_first = password_hash(migrated_url)

    response = reset(client, token, "Yet-another-passphrase-9")

    assert_problem(response, 400, "reset_token_used")
    assert password_hash(migrated_url) == after_first


def test_an_expired_reset_token_is_refused(
    client: Client, mail_dir: Path, migrated_url: str
) -> None:
    ada = signup(client)
    token = emailed_token(client, mail_dir, ada["email"])
    before = password_hash(migrated_url)
    execute(migrated_url, "UPDATE password_resets SET expires_at = created_at")

    response = reset(client, token)

    assert_problem(response, 400, "reset_token_expired")
    assert password_hash(migrated_url) == before
    me(client, ada["headers"])


def test_using_one_reset_token_voids_the_others(client: Client, mail_dir: Path) -> None:
    ada = signup(client)
    first = emailed_token(client, mail_dir, ada["email"])
    second = emailed_token(client, mail_dir, ada["email"])

    assert reset(client, second).status_code == 200

    assert_problem(reset(client, first, "Yet-another-passphrase-9"), 400, "reset_token_used")
    login(client, ada["email"], NEW_PASSWORD)


def _wrong_secret(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def _other_user(token: str) -> str:
    kind, _, row, secret = token.split("_", 3)
    return f"{kind}_{uuid.uuid4().hex}_{row}_{secret}"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: "garbage",
        lambda token: token[:40],
        _wrong_secret,
        _other_user,
        lambda token: "rt" + token[2:],
    ],
    ids=["garbage", "truncated", "wrong-secret", "other-user", "other-kind"],
)
def test_malformed_or_tampered_reset_tokens_are_refused(
    client: Client, mail_dir: Path, migrated_url: str, tamper: Any
) -> None:
    ada = signup(client)
    token = emailed_token(client, mail_dir, ada["email"])
    before = password_hash(migrated_url)

    assert_problem(reset(client, tamper(token)), 400, "invalid_reset_token")
    assert password_hash(migrated_url) == before
    me(client, ada["headers"])
    assert reset(client, token).status_code == 200  # the real token is still good


def test_a_weak_new_password_is_refused_and_the_token_stays_usable(
    client: Client, mail_dir: Path, migrated_url: str
) -> None:
    ada = signup(client)
    token = emailed_token(client, mail_dir, ada["email"])
    before = password_hash(migrated_url)

    response = reset(client, token, "weak")

    problem = assert_problem(response, 400, "weak_password")
    assert "at least 10" in problem["detail"]
    assert password_hash(migrated_url) == before
    me(client, ada["headers"])
    assert reset(client, token).status_code == 200


def test_reset_requests_are_limited_per_account(settings: Settings, mail_dir: Path) -> None:
    with client_with(settings, rate_limit_login="2/minute") as client:
        ada = signup(client)
        for _ in range(2):
            assert forgot(client, ada["email"]).status_code == 202

        refused = forgot(client, ada["email"])

        assert_problem(refused, 429, "too_many_attempts")
        assert int(refused.headers["retry-after"]) >= 1
        assert len(mailbox(mail_dir)) == 2
        assert forgot(client, "someone@example.com").status_code == 202


def test_reset_confirmations_are_limited_per_client_address(
    settings: Settings, mail_dir: Path, migrated_url: str
) -> None:
    with client_with(settings, rate_limit_login_ip="2/minute") as client:
        ada = signup(client)
        token = emailed_token(client, mail_dir, ada["email"])
        for _ in range(2):
            assert_problem(reset(client, "pr_guess"), 400, "invalid_reset_token")
        before = password_hash(migrated_url)

        assert_problem(reset(client, token), 429, "too_many_attempts")
        assert password_hash(migrated_url) == before


def test_the_reset_email_goes_through_a_real_smtp_server(settings: Settings) -> None:
    inbox = Inbox()
    with (
        serving_smtp(inbox) as port,
        client_with(settings, mail_url=f"smtp://127.0.0.1:{port}") as client,
    ):
        ada = signup(client)
        assert forgot(client, ada["email"]).status_code == 202
        received = inbox.next_message()

        assert received.rcpt_tos == [ada["email"]]
        assert received.message["To"] == ada["email"]
        assert reset(client, reset_token_in(received.message)).status_code == 200
        login(client, ada["email"], NEW_PASSWORD)
