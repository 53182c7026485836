"""Sessions: refresh-token rotation and reuse detection, sign-out, session lists, and access
tokens that are expired, tampered with or made for something else; on SQLite and PostgreSQL.

Specification: a refresh token works once; presenting it again (or racing with it) ends its
whole session, newer tokens included; an ended session's access token stops working at once;
every refusal is a precise problem and changes nothing else.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from agentops_server.security.permissions import Role
from agentops_server.security.tokens import encode_access_token, encode_token
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.accounts import (
    AUTH,
    SignedUp,
    login,
    me,
    signup,
    signup_in_two_orgs,
    unique_email,
)
from tests.server.api import Client, assert_problem, bearer
from tests.server.database import db_id, execute, rows
from tests.server.principals import PASSWORD, SECRET_KEY, People


def refresh(client: Client, token: str) -> Any:
    return client.post(f"{AUTH}/refresh", json={"refresh_token": token})


def session_row(database_url: str, session_id: uuid.UUID | str) -> tuple[Any, Any]:
    """(revoked_at, revoked_reason) of a session."""
    [found] = rows(
        database_url,
        "SELECT revoked_at, revoked_reason FROM user_sessions WHERE id = :id",
        id=db_id(database_url, session_id),
    )
    return found[0], found[1]


# -- refresh ---------------------------------------------------------------------------------------


def test_refresh_returns_a_new_pair_and_uses_up_the_old_token(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client)

    response = refresh(client, ada["refresh_token"])

    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["refresh_token"] != ada["refresh_token"]
    assert pair["session_id"] == str(ada["session_id"])
    assert me(client, bearer(pair["access_token"]))["user"]["id"] == str(ada["user_id"])
    used = rows(
        migrated_url,
        "SELECT used_at IS NOT NULL FROM refresh_tokens WHERE session_id = :id "
        "ORDER BY created_at, used_at IS NULL",
        id=db_id(migrated_url, ada["session_id"]),
    )
    assert sorted(bool(flag) for (flag,) in used) == [False, True]
    second = refresh(client, pair["refresh_token"])  # the new one works in turn
    assert second.status_code == 200, second.text


def test_reusing_a_refresh_token_revokes_its_whole_session(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client)
    newer = refresh(client, ada["refresh_token"]).json()

    reused = refresh(client, ada["refresh_token"])

    assert_problem(reused, 401, "refresh_token_reused")
    assert_problem(refresh(client, newer["refresh_token"]), 401, "session_revoked")
    assert_problem(
        client.get(f"{AUTH}/me", headers=bearer(newer["access_token"])), 401, "session_revoked"
    )
    assert session_row(migrated_url, ada["session_id"])[1] == "refresh_token_reused"
    logged = rows(
        migrated_url,
        "SELECT actor_type, target_id FROM audit_log WHERE action = 'session.revoked'",
    )
    assert [(actor, uuid.UUID(target)) for actor, target in logged] == [
        ("system", ada["session_id"])
    ]
    # Other sessions of the user live on.
    login(client, ada["email"])


def test_one_refresh_token_sent_at_once_on_many_connections_has_exactly_one_winner(
    hub_url: str, migrated_url: str
) -> None:
    racers = 6
    with httpx.Client(base_url=hub_url, timeout=60) as http:
        made = http.post(
            f"{AUTH}/signup",
            json={"email": unique_email(), "password": PASSWORD, "org_name": "Race"},
        ).json()
        token, session_id = made["tokens"]["refresh_token"], made["tokens"]["session_id"]
        barrier = threading.Barrier(racers)

        def race(_: int) -> httpx.Response:
            with httpx.Client(base_url=hub_url, timeout=60) as own:
                barrier.wait(30)
                return own.post(f"{AUTH}/refresh", json={"refresh_token": token})

        with ThreadPoolExecutor(racers) as pool:
            answers = list(pool.map(race, range(racers)))

    assert sorted(answer.status_code for answer in answers) == [200] + [401] * (racers - 1)
    for answer in answers:
        if answer.status_code == 401:
            assert answer.json()["code"] == "refresh_token_reused"
    issued = rows(
        migrated_url,
        "SELECT count(*) FROM refresh_tokens WHERE session_id = :id",
        id=db_id(migrated_url, session_id),
    )
    assert issued == [(2,)]  # the first token and the winner's
    assert session_row(migrated_url, session_id)[1] == "refresh_token_reused"


def test_an_expired_session_cannot_be_refreshed(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    execute(migrated_url, "UPDATE user_sessions SET expires_at = created_at")

    response = refresh(client, ada["refresh_token"])

    assert_problem(response, 401, "session_expired")
    assert rows(migrated_url, "SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL") == [(1,)]


def test_a_signed_out_session_cannot_be_refreshed(client: Client) -> None:
    ada = signup(client)
    client.post(f"{AUTH}/logout", headers=ada["headers"])

    assert_problem(refresh(client, ada["refresh_token"]), 401, "session_revoked")


def test_a_member_removed_from_the_org_cannot_refresh(client: Client, migrated_url: str) -> None:
    owner = signup(client)
    viewer = People(migrated_url, owner["org_id"]).add(
        Role.VIEWER, email="viewer@example.com", password=PASSWORD
    )
    tokens = login(client, "viewer@example.com")
    execute(
        migrated_url,
        "DELETE FROM memberships WHERE user_id = :id",
        id=db_id(migrated_url, viewer.user_id),
    )

    assert_problem(refresh(client, tokens["refresh_token"]), 401, "not_a_member")


def _tampered_secret(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize(
    "make",
    [
        lambda ada: "garbage",
        lambda ada: "rt_not_a_token",
        lambda ada: f"rt_{ada['org_id'].hex}_{uuid.uuid4().hex}_{'x' * 43}",
        lambda ada: f"rt_{uuid.uuid4().hex}_{ada['refresh_token'].split('_')[2]}_{'x' * 43}",
        lambda ada: _tampered_secret(ada["refresh_token"]),
        lambda ada: ada["access_token"],
        lambda ada: "pr" + ada["refresh_token"][2:],
    ],
    ids=[
        "garbage",
        "short",
        "unknown-id",
        "another-org",
        "wrong-secret",
        "access-token",
        "other-kind",
    ],
)
def test_malformed_or_unknown_refresh_tokens_are_refused(
    client: Client, migrated_url: str, make: Callable[[SignedUp], str]
) -> None:
    ada = signup(client)

    assert_problem(refresh(client, make(ada)), 401, "invalid_refresh_token")
    assert session_row(migrated_url, ada["session_id"]) == (None, None)
    assert refresh(client, ada["refresh_token"]).status_code == 200  # still unused


def test_refresh_refuses_a_malformed_body(client: Client) -> None:
    assert_problem(client.post(f"{AUTH}/refresh", json={}), 400, "validation_error")
    assert_problem(
        client.post(f"{AUTH}/refresh", json={"refresh_token": "x" * 5000}), 400, "invalid_text"
    )


# -- sign-out and session lists ---------------------------------------------------------------


def test_logout_ends_the_access_and_refresh_tokens_at_once(
    client: Client, migrated_url: str
) -> None:
    ada = signup(client)
    other = login(client, ada["email"])

    response = client.post(f"{AUTH}/logout", headers=ada["headers"])

    assert response.status_code == 204, response.text
    assert_problem(client.get(f"{AUTH}/me", headers=ada["headers"]), 401, "session_revoked")
    assert_problem(refresh(client, ada["refresh_token"]), 401, "session_revoked")
    assert session_row(migrated_url, ada["session_id"])[1] == "logout"
    me(client, bearer(other["access_token"]))  # the user's other session stays


def test_logout_everywhere_ends_every_session_of_the_user_in_every_org(
    client: Client, migrated_url: str
) -> None:
    ada, other = signup_in_two_orgs(client, migrated_url, Role.MEMBER)
    elsewhere = login(client, ada["email"], org="elsewhere")

    response = client.post(f"{AUTH}/logout", json={"everywhere": True}, headers=ada["headers"])

    assert response.status_code == 204, response.text
    for headers in (ada["headers"], bearer(elsewhere["access_token"])):
        assert_problem(client.get(f"{AUTH}/me", headers=headers), 401, "session_revoked")
    me(client, other["headers"])  # other people's sessions are untouched


def test_sessions_are_listed_and_one_can_be_ended(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    phone = login(client, ada["email"])

    listed = client.get(f"{AUTH}/sessions", headers=ada["headers"])

    assert listed.status_code == 200, listed.text
    sessions = {item["id"]: item for item in listed.json()["items"]}
    assert set(sessions) == {str(ada["session_id"]), phone["session_id"]}
    assert sessions[str(ada["session_id"])]["current"] is True
    assert sessions[phone["session_id"]]["current"] is False
    assert sessions[phone["session_id"]]["method"] == "password"

    ended = client.delete(f"{AUTH}/sessions/{phone['session_id']}", headers=ada["headers"])

    assert ended.status_code == 204, ended.text
    assert_problem(
        client.get(f"{AUTH}/me", headers=bearer(phone["access_token"])), 401, "session_revoked"
    )
    after = client.get(f"{AUTH}/sessions", headers=ada["headers"]).json()["items"]
    assert [item["id"] for item in after] == [str(ada["session_id"])]
    logged = rows(
        migrated_url, "SELECT actor_id, target_id FROM audit_log WHERE action = 'session.revoked'"
    )
    assert [(uuid.UUID(str(actor)), target) for actor, target in logged] == [
        (ada["user_id"], phone["session_id"])
    ]


def test_another_users_session_cannot_be_ended(client: Client, migrated_url: str) -> None:
    ada = signup(client)
    viewer = People(migrated_url, ada["org_id"]).add(Role.VIEWER)

    for session_id in (ada["session_id"], uuid.uuid4()):
        response = client.delete(f"{AUTH}/sessions/{session_id}", headers=viewer.headers)
        assert_problem(response, 404, "session_not_found")
    assert session_row(migrated_url, ada["session_id"]) == (None, None)
    me(client, ada["headers"])


def test_a_session_id_that_is_not_a_uuid_is_refused(client: Client) -> None:
    ada = signup(client)

    response = client.delete(f"{AUTH}/sessions/not-a-uuid", headers=ada["headers"])

    assert_problem(response, 404, "not_found")
    me(client, ada["headers"])


# -- access tokens -----------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _flip_in_signature(token: str) -> str:
    head, body, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{body}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def _other_org_in_payload(token: str) -> str:
    head, _, signature = token.split(".")
    return f"{head}.{_b64({**_payload(token), 'org': str(uuid.uuid4())})}.{signature}"


def _alg_none(token: str) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{token.split('.')[1]}."


def _claims(ada: SignedUp) -> dict[str, Any]:
    return {"user_id": ada["user_id"], "org_id": ada["org_id"], "session_id": ada["session_id"]}


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda ada: _flip_in_signature(ada["access_token"]), "invalid_token"),
        (lambda ada: _other_org_in_payload(ada["access_token"]), "invalid_token"),
        (lambda ada: _alg_none(ada["access_token"]), "invalid_token"),
        (
            lambda ada: encode_access_token("another-secret", **_claims(ada), ttl=60),
            "invalid_token",
        ),
        (
            lambda ada: encode_token(
                SECRET_KEY,
                "mfa",
                {
                    "sub": str(ada["user_id"]),
                    "org": str(ada["org_id"]),
                    "sid": str(ada["session_id"]),
                },
                ttl=60,
            ),
            "invalid_token",
        ),
        (lambda ada: encode_access_token(SECRET_KEY, **_claims(ada), ttl=-60), "token_expired"),
        (lambda ada: ada["refresh_token"], "invalid_token"),
        (lambda ada: "not.a.jwt", "invalid_token"),
    ],
    ids=[
        "flipped-signature",
        "edited-payload",
        "alg-none",
        "other-secret",
        "mfa-purpose",
        "expired",
        "refresh-token",
        "garbage",
    ],
)
def test_bad_access_tokens_are_refused_precisely(
    client: Client, make: Callable[[SignedUp], str], code: str
) -> None:
    ada = signup(client)

    response = client.get(f"{AUTH}/me", headers=bearer(make(ada)))

    assert_problem(response, 401, code)
    me(client, ada["headers"])


def test_a_well_signed_token_of_a_session_that_does_not_exist_is_refused(client: Client) -> None:
    ada = signup(client)
    forged = encode_access_token(
        SECRET_KEY, user_id=ada["user_id"], org_id=ada["org_id"], session_id=uuid.uuid4(), ttl=60
    )

    response = client.get(f"{AUTH}/me", headers=bearer(forged))

    assert response.status_code == 401
    assert response.json()["code"] in {"not_a_member", "session_revoked"}


def test_a_session_of_one_org_cannot_reach_another_org(
    client: Client, org: IssuedKey, migrated_url: str
) -> None:
    ada = signup(client)
    crossed = encode_access_token(
        SECRET_KEY, user_id=ada["user_id"], org_id=org.org_id, session_id=ada["session_id"], ttl=60
    )

    assert client.get(f"{AUTH}/me", headers=bearer(crossed)).status_code == 401
