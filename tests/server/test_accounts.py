"""Accounts: sign-up, sign-in, the profile and password changes, on SQLite and PostgreSQL.

Specification: sign-up makes an org, its owner and a session in one go, or nothing; sign-in
answers wrong passwords and unknown emails alike, picks one of the user's orgs, and is limited
per account and per address; a password change ends every other session in every org.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
import uuid

import pytest
from argon2 import PasswordHasher

from agentops_server import Settings
from agentops_server.security.passwords import needs_rehash
from agentops_server.security.permissions import Role
from tests.server.accounts import AUTH, login, me, signup, signup_in_two_orgs, unique_email
from tests.server.api import Client, assert_problem, bearer, client_with, moment
from tests.server.database import execute, rows
from tests.server.principals import PASSWORD, People

NEW_PASSWORD = "Another-g00d-passphrase"


def counts(database_url: str) -> tuple[int, ...]:
    """How many users, orgs, memberships and sessions the database holds."""
    return tuple(
        rows(database_url, f"SELECT count(*) FROM {table}")[0][0]
        for table in ("users", "orgs", "memberships", "user_sessions")
    )


# -- sign-up -------------------------------------------------------------------------------------


def test_signup_makes_an_org_its_owner_and_a_signed_in_session(
    client: Client, migrated_url: str
) -> None:
    response = client.post(
        f"{AUTH}/signup",
        json={
            "email": "Ada@Example.com",
            "password": PASSWORD,
            "name": "Ada Lovelace",
            "org_name": "Analytical Engines",
        },
    )

    assert response.status_code == 201, response.text
    made = response.json()
    assert made["user"]["email"] == "ada@example.com"
    assert made["user"]["name"] == "Ada Lovelace"
    assert made["user"]["mfa_enabled"] is False
    assert made["org"] == {
        "id": made["org"]["id"],
        "name": "Analytical Engines",
        "slug": "analytical-engines",
        "role": "owner",
        "joined_at": made["org"]["joined_at"],
    }
    assert dt.datetime.now(dt.UTC) - moment(made["org"]["joined_at"]) < dt.timedelta(minutes=1)
    assert made["tokens"]["token_type"] == "bearer"
    assert made["tokens"]["org_id"] == made["org"]["id"]
    assert made["tokens"]["refresh_token"].startswith(f"rt_{uuid.UUID(made['org']['id']).hex}_")
    whoami = me(client, bearer(made["tokens"]["access_token"]))
    assert whoami["org"]["role"] == "owner"
    assert whoami["user"]["id"] == made["user"]["id"]
    [(stored,)] = rows(migrated_url, "SELECT password_hash FROM users")
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    logged = rows(migrated_url, "SELECT action, actor_id, target_id FROM audit_log ORDER BY action")
    user_id = uuid.UUID(made["user"]["id"])
    assert [
        (action, uuid.UUID(str(actor)), uuid.UUID(target)) for action, actor, target in logged
    ] == [
        ("member.added", user_id, user_id),
        ("org.created", user_id, uuid.UUID(made["org"]["id"])),
    ]


def test_signup_takes_an_explicit_slug(client: Client) -> None:
    owner = signup(client, org_name="Acme Rockets Inc.", org_slug="rockets")

    assert owner["org_slug"] == "rockets"
    assert me(client, owner["headers"])["org"]["name"] == "Acme Rockets Inc."


def test_signup_refuses_an_invalid_email_and_makes_nothing(
    client: Client, migrated_url: str
) -> None:
    response = client.post(
        f"{AUTH}/signup",
        json={"email": "not-an-address", "password": PASSWORD, "org_name": "Acme"},
    )

    assert_problem(response, 400, "invalid_email")
    assert counts(migrated_url) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Sh0rt!", "at least 10 characters"),
        ("aaaaaaaaaaaaaaaaaa", "less repetitive"),
        ("lettersonly", "Mix letters with digits or symbols"),
        ("ada-lovelace-1815", "email address"),
        ("X1-" + "y" * 300, "at most 256 characters"),
    ],
)
def test_signup_refuses_a_weak_password_saying_why(
    client: Client, migrated_url: str, password: str, reason: str
) -> None:
    response = client.post(
        f"{AUTH}/signup",
        json={"email": "ada-lovelace@example.com", "password": password, "org_name": "Acme"},
    )

    problem = assert_problem(response, 400, "weak_password")
    assert reason in problem["detail"]
    assert counts(migrated_url) == (0, 0, 0, 0)


def test_signup_refuses_a_taken_email_whatever_its_case(client: Client, migrated_url: str) -> None:
    signup(client, email="ada@example.com", org_name="First")

    response = client.post(
        f"{AUTH}/signup",
        json={"email": " ADA@example.com ", "password": PASSWORD, "org_name": "Second"},
    )

    assert_problem(response, 409, "email_taken")
    assert counts(migrated_url) == (1, 1, 1, 1)


def test_probing_emails_through_sign_up_is_limited_per_address(settings: Settings) -> None:
    """Sign-up says when an email is taken (docs/decisions/0016); it is limited like sign-in, so
    one address cannot walk a list of emails through it."""
    with client_with(settings, rate_limit_login_ip="3/minute") as client:
        taken = signup(client)["email"]
        probes = [
            client.post(
                f"{AUTH}/signup",
                json={"email": taken, "password": PASSWORD, "org_name": f"Probe {n}"},
            )
            for n in range(3)
        ]

    for response in probes[:2]:
        assert_problem(response, 409, "email_taken")
    assert_problem(probes[2], 429, "too_many_attempts")


@pytest.mark.parametrize("taken", [True, False], ids=["taken-email", "free-email"])
def test_a_closed_sign_up_refuses_everyone_alike_and_makes_nothing(
    settings: Settings, migrated_url: str, people: People, taken: bool
) -> None:
    email = "olga@acme.example" if taken else unique_email()
    if taken:
        people.add(Role.OWNER, email=email, password=PASSWORD)
    before = counts(migrated_url)

    with client_with(settings, signup_open=False) as client:
        response = client.post(
            f"{AUTH}/signup", json={"email": email, "password": PASSWORD, "org_name": "Closed"}
        )

    assert_problem(response, 403, "signup_closed")
    assert counts(migrated_url) == before


def test_signup_refuses_a_taken_slug_and_makes_no_user(client: Client, migrated_url: str) -> None:
    signup(client, org_name="Acme")

    response = client.post(
        f"{AUTH}/signup",
        json={"email": unique_email(), "password": PASSWORD, "org_name": "ACME!"},
    )

    problem = assert_problem(response, 409, "slug_taken")
    assert "org_slug" in problem["detail"]
    assert counts(migrated_url) == (1, 1, 1, 1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"org_slug": "Not A Slug"}, "invalid_slug"),
        ({"org_slug": "-edge-"}, "invalid_slug"),
        ({"org_name": "   "}, "invalid_org_name"),
        ({"org_name": ""}, "invalid_org_name"),
        ({"org_slug": "x" * 65}, "invalid_slug"),
    ],
)
def test_signup_refuses_a_bad_org_name_or_slug(
    client: Client, migrated_url: str, body: dict[str, str], code: str
) -> None:
    response = client.post(
        f"{AUTH}/signup",
        json={"email": unique_email(), "password": PASSWORD, "org_name": "Acme", **body},
    )

    assert_problem(response, 400, code)
    assert counts(migrated_url) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.com", "org_name": "Acme"},  # no password
        {"email": "ada@example.com", "password": PASSWORD, "org_name": "Acme", "role": "x"},
        {"email": ["ada@example.com"], "password": PASSWORD, "org_name": "Acme"},
    ],
    ids=["missing-field", "unknown-field", "wrong-type"],
)
def test_signup_refuses_malformed_bodies(
    client: Client, migrated_url: str, body: dict[str, object]
) -> None:
    response = client.post(f"{AUTH}/signup", json=body)

    assert_problem(response, 400, "validation_error")
    assert counts(migrated_url) == (0, 0, 0, 0)


def test_signup_refuses_a_body_that_is_not_json(client: Client, migrated_url: str) -> None:
    response = client.post(
        f"{AUTH}/signup", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert_problem(response, 400, "malformed_json")
    assert counts(migrated_url) == (0, 0, 0, 0)


def test_signup_refuses_an_oversized_body(client: Client, migrated_url: str) -> None:
    body = {"email": unique_email(), "password": PASSWORD, "org_name": "Acme", "pad": "x" * 70_000}

    response = client.post(f"{AUTH}/signup", json=body)

    assert_problem(response, 413, "payload_too_large")
    assert counts(migrated_url) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "path",
    ["/signup", "/login", "/login/mfa", "/refresh", "/password/forgot", "/password/reset"],
)
def test_public_routes_refuse_malformed_and_oversized_bodies(
    client: Client, migrated_url: str, path: str
) -> None:
    for body in ([], {"unexpected": "field"}, {"email": 1, "password": 2, "token": 3}):
        assert_problem(client.post(f"{AUTH}{path}", json=body), 400, "validation_error")
    not_json = client.post(
        f"{AUTH}{path}", content=b"\x00\xff", headers={"content-type": "application/json"}
    )
    assert_problem(not_json, 400, "malformed_json")
    oversized = client.post(f"{AUTH}{path}", json={"padding": "x" * 70_000})
    assert_problem(oversized, 413, "payload_too_large")
    assert counts(migrated_url) == (0, 0, 0, 0)
    assert rows(migrated_url, "SELECT count(*) FROM password_resets") == [(0,)]


# -- sign-in -------------------------------------------------------------------------------------


def test_login_returns_a_short_lived_access_token_and_a_refresh_token(client: Client) -> None:
    owner = signup(client)

    tokens = login(client, owner["email"].upper())

    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["user_id"] == str(owner["user_id"])
    assert tokens["org_id"] == str(owner["org_id"])
    assert tokens["session_id"] != str(owner["session_id"])
    assert tokens["refresh_token"].startswith(f"rt_{owner['org_id'].hex}_")
    assert me(client, bearer(tokens["access_token"]))["session_id"] == tokens["session_id"]


def test_wrong_password_and_unknown_email_get_the_same_answer_in_the_same_time(
    client: Client,
) -> None:
    owner = signup(client)

    def attempt(email: str) -> tuple[float, dict[str, object]]:
        started = time.perf_counter()
        response = client.post(
            f"{AUTH}/login", json={"email": email, "password": "Wrong-password-1"}
        )
        elapsed = time.perf_counter() - started
        return elapsed, assert_problem(response, 401, "invalid_credentials")

    wrong, unknown = [], []
    for _ in range(5):  # interleaved, so a busy moment of the machine hits both
        wrong.append(attempt(owner["email"]))
        unknown.append(attempt("nobody@example.com"))

    assert {str(body) for _, body in wrong} == {str(body) for _, body in unknown}
    # Both pay for one argon2 verification: an unknown email is not answered faster.
    fast, slow = (statistics.median(t for t, _ in times) for times in (unknown, wrong))
    assert fast > 0.5 * slow


def test_login_picks_the_org_asked_for_by_slug_or_id_else_the_oldest(
    client: Client, migrated_url: str
) -> None:
    ada, other = signup_in_two_orgs(client, migrated_url, Role.MEMBER)

    by_default = login(client, ada["email"])
    by_slug = login(client, ada["email"], org="elsewhere")
    by_id = login(client, ada["email"], org=str(ada["org_id"]))

    assert by_default["org_id"] == str(ada["org_id"])
    assert by_slug["org_id"] == str(other["org_id"])
    assert me(client, bearer(by_slug["access_token"]))["org"]["role"] == "member"
    assert by_id["org_id"] == str(ada["org_id"])


def test_login_to_an_org_the_user_is_not_in_is_refused(client: Client, migrated_url: str) -> None:
    ada = signup(client, org_name="Home")
    signup(client, org_name="Elsewhere")
    before = counts(migrated_url)

    response = client.post(
        f"{AUTH}/login", json={"email": ada["email"], "password": PASSWORD, "org": "elsewhere"}
    )

    assert_problem(response, 403, "not_a_member")
    assert counts(migrated_url) == before


def test_login_of_a_user_without_any_org_is_refused(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    execute(migrated_url, "DELETE FROM user_sessions")
    execute(migrated_url, "DELETE FROM memberships")

    response = client.post(f"{AUTH}/login", json={"email": ada["email"], "password": PASSWORD})

    assert_problem(response, 403, "no_membership")


def test_login_is_limited_per_account_and_a_success_starts_the_count_over(
    settings: Settings,
) -> None:
    with client_with(settings, rate_limit_login="3/minute") as client:
        ada = signup(client)
        wrong = {"email": ada["email"], "password": "Wrong-password-1"}
        for _ in range(2):
            assert_problem(client.post(f"{AUTH}/login", json=wrong), 401, "invalid_credentials")
        login(client, ada["email"])  # the third attempt succeeds: the count starts over
        for _ in range(3):
            assert_problem(client.post(f"{AUTH}/login", json=wrong), 401, "invalid_credentials")

        refused = client.post(f"{AUTH}/login", json={"email": ada["email"], "password": PASSWORD})

        assert_problem(refused, 429, "too_many_attempts")
        assert int(refused.headers["retry-after"]) >= 1
        # Another account is not affected.
        other = signup(client)
        login(client, other["email"])


def test_login_is_limited_per_client_address_across_accounts(settings: Settings) -> None:
    with client_with(settings, rate_limit_login_ip="3/minute") as client:
        ada = signup(client)
        for number in range(3):
            response = client.post(
                f"{AUTH}/login", json={"email": f"guess{number}@example.com", "password": "x"}
            )
            assert_problem(response, 401, "invalid_credentials")

        refused = client.post(f"{AUTH}/login", json={"email": ada["email"], "password": PASSWORD})

        assert_problem(refused, 429, "too_many_attempts")
        assert int(refused.headers["retry-after"]) >= 1


def test_login_rehashes_a_password_hashed_with_older_parameters(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client)
    weak_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    execute(migrated_url, "UPDATE users SET password_hash = :hash", hash=weak_hash)

    login(client, ada["email"])

    [(stored,)] = rows(migrated_url, "SELECT password_hash FROM users")
    assert stored != weak_hash
    assert not needs_rehash(stored)
    login(client, ada["email"])  # and the new hash still verifies


# -- the signed-in user ----------------------------------------------------------------------------


def test_me_shows_the_user_this_org_and_role_and_every_org(
    client: Client, migrated_url: str
) -> None:
    ada, _ = signup_in_two_orgs(client, migrated_url, Role.VIEWER, name="Ada")

    whoami = me(client, ada["headers"])

    assert whoami["user"]["email"] == ada["email"]
    assert whoami["user"]["name"] == "Ada"
    assert whoami["org"]["slug"] == "home"
    assert whoami["org"]["role"] == "owner"
    assert whoami["session_id"] == str(ada["session_id"])
    assert [(org["slug"], org["role"]) for org in whoami["orgs"]] == [
        ("home", "owner"),
        ("elsewhere", "viewer"),
    ]


def test_the_display_name_can_be_changed(client: Client) -> None:
    ada = signup(client, name="Ada")

    response = client.patch(f"{AUTH}/me", json={"name": "  Ada   King "}, headers=ada["headers"])

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Ada King"
    assert me(client, ada["headers"])["user"]["name"] == "Ada King"
    too_long = client.patch(f"{AUTH}/me", json={"name": "x" * 201}, headers=ada["headers"])
    assert_problem(too_long, 400, "invalid_name")


def test_switching_org_opens_a_session_in_another_org_of_the_user(
    client: Client, migrated_url: str
) -> None:
    ada, _ = signup_in_two_orgs(client, migrated_url, Role.ADMIN)

    response = client.post(f"{AUTH}/switch-org", json={"org": "elsewhere"}, headers=ada["headers"])

    assert response.status_code == 200, response.text
    switched = me(client, bearer(response.json()["access_token"]))
    assert switched["org"]["slug"] == "elsewhere"
    assert switched["org"]["role"] == "admin"
    assert me(client, ada["headers"])["org"]["slug"] == "home"  # the first session stays


def test_switching_to_an_org_of_someone_else_is_refused(client: Client) -> None:
    ada = signup(client, org_name="Home")
    other = signup(client, org_name="Elsewhere")

    for org in ("elsewhere", str(other["org_id"]), "no-such-org"):
        response = client.post(f"{AUTH}/switch-org", json={"org": org}, headers=ada["headers"])
        assert_problem(response, 403, "not_a_member")


def test_api_keys_cannot_act_as_an_account(client: Client, auth: dict[str, str]) -> None:
    assert_problem(client.get(f"{AUTH}/me", headers=auth), 403, "insufficient_scope")
    assert_problem(client.post(f"{AUTH}/logout", headers=auth), 403, "insufficient_scope")


def test_account_routes_need_a_credential(client: Client) -> None:
    assert_problem(client.get(f"{AUTH}/me"), 401, "unauthenticated")


# -- password change -------------------------------------------------------------------------------


def test_password_change_keeps_this_session_and_ends_the_others_in_every_org(
    client: Client, migrated_url: str
) -> None:
    ada, _ = signup_in_two_orgs(client, migrated_url, Role.MEMBER)
    second = bearer(login(client, ada["email"])["access_token"])
    elsewhere = bearer(login(client, ada["email"], org="elsewhere")["access_token"])

    response = client.post(
        f"{AUTH}/password/change",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=ada["headers"],
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"sessions_revoked": 3}  # joining's, second, elsewhere
    me(client, ada["headers"])
    for ended in (second, elsewhere):
        assert_problem(client.get(f"{AUTH}/me", headers=ended), 401, "session_revoked")
    wrong = client.post(f"{AUTH}/login", json={"email": ada["email"], "password": PASSWORD})
    assert_problem(wrong, 401, "invalid_credentials")
    login(client, ada["email"], NEW_PASSWORD)
    logged = rows(
        migrated_url,
        "SELECT org_id, actor_id FROM audit_log WHERE action = 'user.password_changed'",
    )
    assert [(uuid.UUID(str(org_id)), uuid.UUID(str(actor))) for org_id, actor in logged] == [
        (ada["org_id"], ada["user_id"])
    ]


def test_password_change_with_a_wrong_current_password_changes_nothing(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client)
    second = bearer(login(client, ada["email"])["access_token"])
    [(before,)] = rows(migrated_url, "SELECT password_hash FROM users")

    response = client.post(
        f"{AUTH}/password/change",
        json={"current_password": "Not-my-password-1", "new_password": NEW_PASSWORD},
        headers=ada["headers"],
    )

    assert_problem(response, 403, "invalid_password")
    assert rows(migrated_url, "SELECT password_hash FROM users") == [(before,)]
    me(client, second)


def test_password_change_to_a_weak_password_is_refused(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    [(before,)] = rows(migrated_url, "SELECT password_hash FROM users")

    response = client.post(
        f"{AUTH}/password/change",
        json={"current_password": PASSWORD, "new_password": "password"},
        headers=ada["headers"],
    )

    problem = assert_problem(response, 400, "weak_password")
    assert "at least 10" in problem["detail"]
    assert rows(migrated_url, "SELECT password_hash FROM users") == [(before,)]


def test_password_confirmations_are_limited_per_account(settings: Settings) -> None:
    with client_with(settings, rate_limit_login="2/minute") as client:
        ada = signup(client)
        wrong = {"current_password": "Not-my-password-1", "new_password": NEW_PASSWORD}
        for _ in range(2):
            response = client.post(f"{AUTH}/password/change", json=wrong, headers=ada["headers"])
            assert_problem(response, 403, "invalid_password")

        response = client.post(f"{AUTH}/password/change", json=wrong, headers=ada["headers"])

        assert_problem(response, 429, "too_many_attempts")
