"""Two-factor authentication with an authenticator app (TOTP) and recovery codes, on SQLite
and PostgreSQL.

Specification: enrolment gives a secret and an ``otpauth://`` URI, and takes effect only once a
first code confirms it; from then on signing in needs a code, each code works once, and each
of the ten recovery codes works once; turning it off or replacing the recovery codes needs the
password; every refusal is a precise problem and changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from agentops_server import Settings
from agentops_server.security.tokens import encode_token
from tests.server.accounts import AUTH, SignedUp, login, me, signup, totp_code
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.database import rows
from tests.server.principals import PASSWORD, SECRET_KEY


def enrol(client: Client, account: SignedUp) -> str:
    """Start TOTP enrolment; the secret."""
    response = client.post(f"{AUTH}/mfa/totp", headers=account["headers"])
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def enable(client: Client, account: SignedUp) -> tuple[str, list[str]]:
    """Enrol and confirm TOTP; the secret and the recovery codes. The confirming code is the
    current step's: later sign-ins use the codes of later steps."""
    secret = enrol(client, account)
    response = client.post(
        f"{AUTH}/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=account["headers"]
    )
    assert response.status_code == 200, response.text
    codes: list[str] = response.json()["recovery_codes"]
    return secret, codes


def mfa_token(client: Client, email: str) -> str:
    challenge = login(client, email)
    assert challenge["mfa_required"] is True, challenge
    token: str = challenge["mfa_token"]
    return token


def finish(client: Client, token: str, **code: str) -> Any:
    return client.post(f"{AUTH}/login/mfa", json={"mfa_token": token, **code})


def test_enrolment_gives_a_secret_and_an_otpauth_uri_and_stores_the_secret_encrypted(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client, email="ada@example.com")

    response = client.post(f"{AUTH}/mfa/totp", headers=ada["headers"])

    assert response.status_code == 201, response.text
    enrolment = response.json()
    uri = urlsplit(enrolment["otpauth_uri"])
    query = parse_qs(uri.query)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/AgentOps Hub:ada@example.com"
    assert query["issuer"] == ["AgentOps Hub"]
    assert query["secret"] == [enrolment["secret"]]
    [(stored, confirmed)] = rows(migrated_url, "SELECT secret, confirmed_at FROM mfa_factors")
    assert enrolment["secret"] not in stored
    assert confirmed is None


def test_sign_in_needs_no_code_until_enrolment_is_confirmed(client: Client) -> None:
    ada = signup(client)
    enrol(client, ada)

    tokens = login(client, ada["email"])

    assert "access_token" in tokens
    assert me(client, ada["headers"])["user"]["mfa_enabled"] is False


def test_a_wrong_confirmation_code_leaves_two_factor_off(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    enrol(client, ada)

    for code in ("000000", "12345", "abcdef"):
        response = client.post(
            f"{AUTH}/mfa/totp/confirm", json={"code": code}, headers=ada["headers"]
        )
        assert_problem(response, 400, "invalid_mfa_code")
    assert rows(migrated_url, "SELECT confirmed_at FROM mfa_factors") == [(None,)]
    assert rows(migrated_url, "SELECT count(*) FROM recovery_codes") == [(0,)]


def test_confirming_turns_two_factor_on_with_ten_hashed_recovery_codes(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client)

    _, codes = enable(client, ada)

    assert len(codes) == len(set(codes)) == 10
    stored = {
        code_hash for (code_hash,) in rows(migrated_url, "SELECT code_hash FROM recovery_codes")
    }
    assert len(stored) == 10
    assert not any(code in stored_hash for code in codes for stored_hash in stored)
    whoami = me(client, ada["headers"])["user"]
    assert (whoami["mfa_enabled"], whoami["mfa_methods"]) == (True, ["totp"])
    logged = rows(
        migrated_url, "SELECT org_id, actor_id FROM audit_log WHERE action = 'user.mfa_enabled'"
    )
    assert [(uuid.UUID(str(org)), uuid.UUID(str(actor))) for org, actor in logged] == [
        (ada["org_id"], ada["user_id"])
    ]


def test_confirming_without_starting_or_twice_is_refused(client: Client) -> None:
    ada = signup(client)
    not_started = client.post(
        f"{AUTH}/mfa/totp/confirm", json={"code": "123456"}, headers=ada["headers"]
    )
    assert_problem(not_started, 409, "mfa_enrolment_not_started")
    secret, _ = enable(client, ada)

    again = client.post(
        f"{AUTH}/mfa/totp/confirm",
        json={"code": totp_code(secret, steps_ahead=1)},
        headers=ada["headers"],
    )
    restart = client.post(f"{AUTH}/mfa/totp", headers=ada["headers"])

    assert_problem(again, 409, "mfa_already_enabled")
    assert_problem(restart, 409, "mfa_already_enabled")


def test_sign_in_with_two_factor_needs_a_code(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    secret, _ = enable(client, ada)

    challenge = login(client, ada["email"])

    assert challenge["mfa_required"] is True
    assert challenge["methods"] == ["totp"]
    assert "access_token" not in challenge
    response = finish(client, challenge["mfa_token"], code=totp_code(secret, steps_ahead=1))
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["org_id"] == str(ada["org_id"])
    assert me(client, bearer(tokens["access_token"]))["user"]["id"] == str(ada["user_id"])
    methods = rows(migrated_url, "SELECT method FROM user_sessions ORDER BY created_at")
    assert methods[-1] == ("password+totp",)


def test_a_code_cannot_be_used_twice(client: Client) -> None:
    ada = signup(client)
    secret, _ = enable(client, ada)
    code = totp_code(secret, steps_ahead=1)
    assert finish(client, mfa_token(client, ada["email"]), code=code).status_code == 200

    replayed = finish(client, mfa_token(client, ada["email"]), code=code)

    assert_problem(replayed, 401, "mfa_code_reused")
    # Nor can an older one, still inside the window: the confirmation's code.
    older = finish(client, mfa_token(client, ada["email"]), code=totp_code(secret))
    assert older.status_code == 401


def test_a_wrong_code_is_refused(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    enable(client, ada)
    sessions_before = rows(migrated_url, "SELECT count(*) FROM user_sessions")

    response = finish(client, mfa_token(client, ada["email"]), code="000000")

    assert_problem(response, 401, "invalid_mfa_code")
    assert rows(migrated_url, "SELECT count(*) FROM user_sessions") == sessions_before


def test_each_recovery_code_works_once_however_it_is_typed(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client)
    _, codes = enable(client, ada)

    typed = " " + codes[0].upper().replace("-", " ") + " "
    response = finish(client, mfa_token(client, ada["email"]), recovery_code=typed)

    assert response.status_code == 200, response.text
    again = finish(client, mfa_token(client, ada["email"]), recovery_code=codes[0])
    assert_problem(again, 401, "invalid_mfa_code")
    assert (
        finish(client, mfa_token(client, ada["email"]), recovery_code=codes[1]).status_code == 200
    )
    methods = rows(
        migrated_url, "SELECT count(*) FROM user_sessions WHERE method = 'password+recovery_code'"
    )
    assert methods == [(2,)]


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (
            lambda ada: encode_token(
                SECRET_KEY, "mfa", {"sub": str(ada["user_id"]), "org": str(ada["org_id"])}, ttl=-10
            ),
            "mfa_token_expired",
        ),
        (lambda ada: ada["access_token"], "invalid_mfa_token"),
        (
            lambda ada: encode_token(
                "another-secret",
                "mfa",
                {"sub": str(ada["user_id"]), "org": str(ada["org_id"])},
                ttl=60,
            ),
            "invalid_mfa_token",
        ),
        (
            lambda ada: encode_token(SECRET_KEY, "mfa", {"sub": "nobody"}, ttl=60),
            "invalid_mfa_token",
        ),
        (lambda ada: "not-a-token", "invalid_mfa_token"),
    ],
    ids=["expired", "access-token", "other-secret", "bad-claims", "garbage"],
)
def test_bad_mfa_tokens_are_refused(
    client: Client, migrated_url: str, make: Any, code: str
) -> None:
    ada = signup(client)
    secret, _ = enable(client, ada)
    sessions_before = rows(migrated_url, "SELECT count(*) FROM user_sessions")

    response = finish(client, make(ada), code=totp_code(secret, steps_ahead=1))

    assert_problem(response, 401, code)
    assert rows(migrated_url, "SELECT count(*) FROM user_sessions") == sessions_before
    # The code was not spent: it still signs in.
    good = finish(client, mfa_token(client, ada["email"]), code=totp_code(secret, steps_ahead=1))
    assert good.status_code == 200, good.text


def test_a_tampered_mfa_token_is_refused(client: Client) -> None:
    ada = signup(client)
    secret, _ = enable(client, ada)
    token = mfa_token(client, ada["email"])
    head, body, signature = token.split(".")
    tampered = (
        f"{head}.{body}.{signature[:10]}{'A' if signature[10] != 'A' else 'B'}{signature[11:]}"
    )

    response = finish(client, tampered, code=totp_code(secret, steps_ahead=1))

    assert_problem(response, 401, "invalid_mfa_token")


@pytest.mark.parametrize("codes", [{}, {"code": "123456", "recovery_code": "abcd-ef01"}])
def test_exactly_one_code_is_needed(client: Client, codes: dict[str, str]) -> None:
    ada = signup(client)
    enable(client, ada)

    response = finish(client, mfa_token(client, ada["email"]), **codes)

    assert_problem(response, 400, "mfa_code_required")


def test_second_factor_attempts_are_limited_per_account(settings: Settings) -> None:
    with client_with(settings, rate_limit_login="3/minute") as client:
        ada = signup(client)
        secret, _ = enable(client, ada)
        token = mfa_token(client, ada["email"])
        for _ in range(3):
            assert_problem(finish(client, token, code="000000"), 401, "invalid_mfa_code")

        refused = finish(client, token, code=totp_code(secret, steps_ahead=1))

        assert_problem(refused, 429, "too_many_attempts")
        assert int(refused.headers["retry-after"]) >= 1


def test_turning_two_factor_off_needs_the_password(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    enable(client, ada)

    wrong = client.request(
        "DELETE", f"{AUTH}/mfa/totp", json={"password": "Not-my-password-1"}, headers=ada["headers"]
    )

    assert_problem(wrong, 403, "invalid_password")
    assert me(client, ada["headers"])["user"]["mfa_enabled"] is True
    right = client.request(
        "DELETE", f"{AUTH}/mfa/totp", json={"password": PASSWORD}, headers=ada["headers"]
    )
    assert right.status_code == 204, right.text
    assert me(client, ada["headers"])["user"]["mfa_enabled"] is False
    assert "access_token" in login(client, ada["email"])
    assert rows(migrated_url, "SELECT count(*) FROM recovery_codes") == [(0,)]
    assert rows(migrated_url, "SELECT count(*) FROM mfa_factors") == [(0,)]
    logged = rows(migrated_url, "SELECT count(*) FROM audit_log WHERE action = 'user.mfa_disabled'")
    assert logged == [(1,)]
    again = client.request(
        "DELETE", f"{AUTH}/mfa/totp", json={"password": PASSWORD}, headers=ada["headers"]
    )
    assert_problem(again, 409, "mfa_not_enabled")


def test_new_recovery_codes_replace_the_old_ones(client: Client) -> None:
    ada = signup(client)
    _, old = enable(client, ada)

    wrong = client.post(
        f"{AUTH}/mfa/recovery-codes", json={"password": "Not-my-password-1"}, headers=ada["headers"]
    )
    assert_problem(wrong, 403, "invalid_password")
    response = client.post(
        f"{AUTH}/mfa/recovery-codes", json={"password": PASSWORD}, headers=ada["headers"]
    )

    assert response.status_code == 200, response.text
    new = response.json()["recovery_codes"]
    assert len(new) == 10
    assert set(new).isdisjoint(old)
    stale = finish(client, mfa_token(client, ada["email"]), recovery_code=old[0])
    assert_problem(stale, 401, "invalid_mfa_code")
    assert finish(client, mfa_token(client, ada["email"]), recovery_code=new[0]).status_code == 200


def test_recovery_codes_need_two_factor_on(client: Client) -> None:
    ada = signup(client)

    response = client.post(
        f"{AUTH}/mfa/recovery-codes", json={"password": PASSWORD}, headers=ada["headers"]
    )

    assert_problem(response, 409, "mfa_not_enabled")


def test_a_factor_sealed_under_another_secret_key_cannot_be_used(
    settings: Settings, client: Client
) -> None:
    ada = signup(client)
    secret, codes = enable(client, ada)

    with client_with(settings, secret_key="a-rotated-secret-key") as rotated:
        token = mfa_token(rotated, ada["email"])
        unreadable = finish(rotated, token, code=totp_code(secret, steps_ahead=1))
        assert_problem(unreadable, 401, "invalid_mfa_code")
        # Recovery codes do not depend on the key: the way back in.
        assert finish(rotated, token, recovery_code=codes[0]).status_code == 200
