"""HTTP defences: the security headers on every answer of every route, ``Cache-Control:
no-store`` on the answers carrying tokens and secrets, HSTS as a setting, and the proxies whose
``X-Forwarded-For`` the hub believes (none by default), on both databases.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from agentops_server import Settings, create_app
from agentops_server.api.headers import API_CSP, HTML_CSP
from agentops_server.db.migrate import upgrade
from agentops_server.security.permissions import Role
from agentops_server.services.identity.api_keys import IssuedKey
from tests.server.accounts import AUTH, signup, totp_code, unique_email
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.conftest import PUBLIC_URL, make_org, postgresql_schema
from tests.server.database import db_id, scalar
from tests.server.principals import PASSWORD, SECRET_KEY, People
from tests.server.routes import PARAMETER, endpoints
from tests.server.servers import hub_process, serving

ROUTES = sorted(
    (method, path)
    for method, path, _ in endpoints(
        create_app(Settings(database_url="sqlite:///:memory:")), filled=False
    )
)
"""Every route of the app, as (method, path with its ``{parameters}``)."""
ABSENT = str(uuid.UUID(int=1))
"""The id in each route's path: no row has it."""
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
ONE_YEAR = 365 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Hub:
    """A hub on one database, shared by a module's tests, and an org's all-scopes key."""

    client: Client
    key: IssuedKey


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A migrated database of each kind, its hub (served at ``PUBLIC_URL``, https) and a key of
    an org on it."""
    with _database(request.param, tmp_path_factory.mktemp("security")) as database_url:
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            secret_key=SECRET_KEY,
            public_url=PUBLIC_URL,
            stream_max_age=0.05,  # GET /api/v1/stream ends, so that it can be called like the rest
        )
        with TestClient(create_app(settings)) as client:
            yield Hub(client, make_org(database_url, "shielded"))


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_answers_with_the_security_headers(hub: Hub, method: str, path: str) -> None:
    body = {"json": {}} if method in {"POST", "PUT", "PATCH"} else {}

    response = hub.client.request(
        method, PARAMETER.sub(ABSENT, path), headers=bearer(hub.key.key), **body
    )

    assert response.status_code < 500, response.text
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["strict-transport-security"] == f"max-age={ONE_YEAR}"
    html = response.headers.get("content-type", "").startswith("text/html")
    assert response.headers["content-security-policy"] == (HTML_CSP if html else API_CSP)
    if path.startswith("/api/v1") and response.is_success and path != "/api/v1/org/logo":
        assert "no-store" in response.headers["cache-control"].split(
            ", "
        )  # the stream adds no-cache


def test_answers_the_hub_gives_before_any_route_carry_the_headers_too(hub: Hub) -> None:
    unknown_route = hub.client.get("/nope")
    forged_key = hub.client.get("/api/v1/runs", headers=bearer(hub.key.key[:-4] + "xxxx"))
    wrong_method = hub.client.put("/health")

    for response, status in ((unknown_route, 404), (forged_key, 401), (wrong_method, 405)):
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/problem+json")
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        assert response.headers["content-security-policy"] == API_CSP


def test_the_schema_page_is_html_under_a_policy_that_loads_only_from_the_hub(hub: Hub) -> None:
    page = hub.client.get("/schema")

    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == HTML_CSP
    assert "frame-ancestors 'none'" in HTML_CSP


@pytest.mark.parametrize(
    ("changes", "hsts"),
    [
        ({}, f"max-age={ONE_YEAR}"),
        ({"hsts_max_age": 600}, "max-age=600"),
        ({"hsts_max_age": 0}, None),
        ({"public_url": "http://hub.internal:8000"}, None),
    ],
    ids=["https", "shorter", "off", "served-over-http"],
)
def test_hsts_is_sent_when_the_hub_is_served_over_https_for_as_long_as_set(
    settings: Settings, changes: dict[str, Any], hsts: str | None
) -> None:
    with client_with(settings, **changes) as client:
        response = client.get("/health")

    assert response.headers.get("strict-transport-security") == hsts


# Answers that carry a token or a secret


def test_sign_up_sign_in_refresh_and_switching_org_answers_are_never_stored(
    client: Client, migrated_url: str
) -> None:
    made = client.post(
        f"{AUTH}/signup",
        json={"email": unique_email(), "password": PASSWORD, "org_name": "Stored nowhere"},
    )
    signed_in = client.post(
        f"{AUTH}/login", json={"email": made.json()["user"]["email"], "password": PASSWORD}
    )
    refreshed = client.post(
        f"{AUTH}/refresh", json={"refresh_token": signed_in.json()["refresh_token"]}
    )
    other = signup(client, org_name="Elsewhere")
    People(migrated_url, other["org_id"]).add(Role.MEMBER, email=made.json()["user"]["email"])
    switched = client.post(
        f"{AUTH}/switch-org",
        json={"org": other["org_slug"]},
        headers=bearer(refreshed.json()["access_token"]),
    )

    for response in (made, signed_in, refreshed, switched):
        assert response.is_success, response.text
        assert response.headers["cache-control"] == "no-store"


def test_second_factor_answers_are_never_stored(client: Client) -> None:
    ada = signup(client)
    enrolment = client.post(f"{AUTH}/mfa/totp", headers=ada["headers"])
    secret = enrolment.json()["secret"]
    confirmed = client.post(
        f"{AUTH}/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=ada["headers"]
    )
    regenerated = client.post(
        f"{AUTH}/mfa/recovery-codes", json={"password": PASSWORD}, headers=ada["headers"]
    )
    challenge = client.post(f"{AUTH}/login", json={"email": ada["email"], "password": PASSWORD})
    finished = client.post(
        f"{AUTH}/login/mfa",
        json={"mfa_token": challenge.json()["mfa_token"], "code": totp_code(secret, steps_ahead=1)},
    )

    for response in (enrolment, confirmed, regenerated, challenge, finished):
        assert response.is_success, response.text
        assert response.headers["cache-control"] == "no-store"


def test_keys_shown_once_are_never_stored(client: Client, auth: dict[str, str]) -> None:
    created = client.post(
        "/api/v1/api-keys", json={"name": "once", "scopes": ["read"]}, headers=auth
    )
    rotated = client.post(f"/api/v1/api-keys/{created.json()['id']}/rotate", headers=auth)

    for response in (created, rotated):
        assert response.is_success, response.text
        assert "key" in response.json()
        assert response.headers["cache-control"] == "no-store"


# Trusted proxies


def test_forwarded_for_is_not_believed_by_default_so_rotating_it_evades_no_limit(
    settings: Settings,
) -> None:
    app = create_app(dataclasses.replace(settings, rate_limit_login_ip="3/minute"))

    with serving(app) as url:
        statuses = [_sign_in_forwarded_for(url, f"203.0.113.{n}") for n in range(4)]

    assert statuses == [401, 401, 401, 429]


def test_a_trusted_proxy_forwards_the_clients_address(
    settings: Settings, migrated_url: str, owner_email: str
) -> None:
    app = create_app(
        dataclasses.replace(settings, rate_limit_login_ip="3/minute", trusted_proxies="127.0.0.1")
    )

    with serving(app) as url:
        statuses = [_sign_in_forwarded_for(url, f"203.0.113.{n}") for n in range(4)]
        signed_in = httpx.post(
            f"{url}{AUTH}/login",
            json={"email": owner_email, "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.7"},
        )

    assert statuses == [401] * 4  # four clients, each under its own limit
    assert signed_in.status_code == 200, signed_in.text
    session_id = signed_in.json()["session_id"]
    recorded = scalar(
        migrated_url,
        "SELECT ip FROM user_sessions WHERE id = :id",
        id=db_id(migrated_url, session_id),
    )
    assert recorded == "198.51.100.7"


def test_agentops_hub_serve_believes_no_forwarded_for_by_default(migrated_url: str) -> None:
    environment = {
        "AGENTOPS_DATABASE_URL": migrated_url,
        "AGENTOPS_RATE_LIMIT_LOGIN_IP": "3/minute",
    }

    with hub_process("--no-migrate", environment=environment) as served:
        statuses = [_sign_in_forwarded_for(served.url, f"203.0.113.{n}") for n in range(4)]

    assert statuses == [401, 401, 401, 429]


def test_a_trusted_proxy_must_be_an_address_or_a_network() -> None:
    with pytest.raises(ValueError, match="AGENTOPS_TRUSTED_PROXIES"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.internal")


@pytest.fixture
def owner_email(people: People) -> str:
    """The email of an owner of ``org`` who signs in with ``PASSWORD``."""
    return people.add(Role.OWNER, email="pat@acme.example", password=PASSWORD).email


def _sign_in_forwarded_for(url: str, address: str) -> int:
    """The status of a wrong sign-in to a new account each time, claiming to come from
    ``address``."""
    response = httpx.post(
        f"{url}{AUTH}/login",
        json={"email": unique_email(), "password": "wrong password"},
        headers={"X-Forwarded-For": address},
        timeout=30,
    )
    if response.status_code == 429:
        assert_problem(response, 429, "too_many_attempts")
    return response.status_code


@contextmanager
def _database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'hub.db'}"
        return
    with postgresql_schema() as url:
        yield url
