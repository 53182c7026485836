"""Supabase Auth as an external identity backend: the hub accepts Supabase access tokens, signed
the way Supabase signs them (HS256 with the project's JWT secret, or ES256 with a key the local
provider publishes at ``/auth/v1/.well-known/jwks.json``), and maps them to hub users and orgs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import Key, OctKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server import Settings, create_app
from agentops_server.db.engine import create_async_db_engine
from agentops_server.db.models import OAuthIdentity, User
from agentops_server.db.tenancy import TenantSession
from agentops_server.refusals import Forbidden
from agentops_server.security.permissions import Role
from agentops_server.security.tokens import encode_token
from agentops_server.services.identity.external import ExternalIdentity, member_for_identity
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.conftest import make_org
from tests.server.database import count, rows
from tests.server.ingest_events import T0
from tests.server.mail import invitation_token, mailbox
from tests.server.oidc_provider import LocalIdentityProvider, es256_key
from tests.server.principals import People
from tests.server.reading import seeded

JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
SUB = "5f1c1f0e-8a8e-4c53-9d2b-0a4f5e6d7c8b"


@pytest.fixture
def project(served_provider: LocalIdentityProvider) -> LocalIdentityProvider:
    """The local stand-in for a Supabase project: its URL serves the project's JWKS."""
    served_provider.reset()
    served_provider.supabase_keys = [es256_key("sb-key-1")]
    return served_provider


@pytest.fixture
def supabase_settings(settings: Settings, project: LocalIdentityProvider) -> Settings:
    return dataclasses.replace(
        settings, supabase_url=project.base_url, supabase_jwt_secret=JWT_SECRET
    )


@pytest.fixture
def hub(supabase_settings: Settings) -> Iterator[Client]:
    with client_with(supabase_settings) as client:
        yield client


def claims(project: LocalIdentityProvider, **changes: Any) -> dict[str, Any]:
    """An access token's claims as Supabase Auth writes them for a signed-in email user."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": f"{project.base_url}/auth/v1",
        "sub": SUB,
        "aud": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "email": "grace@example.com",
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {
            "email": "grace@example.com",
            "email_verified": True,
            "full_name": "Grace Hopper",
            "phone_verified": False,
            "sub": SUB,
        },
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


def hs256(body: dict[str, Any], secret: str = JWT_SECRET) -> str:
    """Signed as a project on the legacy JWT secret signs."""
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, body, OctKey.import_key(secret))


def es256(body: dict[str, Any], key: Key) -> str:
    """Signed as a project on asymmetric signing keys signs."""
    return jwt.encode({"alg": "ES256", "typ": "JWT", "kid": key.kid}, body, key)


def member_of_one_org(database_url: str, role: Role = Role.MEMBER) -> uuid.UUID:
    """Grace, known to the hub already (by email, as an invitation leaves her), in one org."""
    navy_labs = make_org(database_url, "Navy Labs").org_id
    grace = People(database_url, navy_labs).add(
        role, email="grace@example.com", name="Grace Hopper"
    )
    return grace.user_id


# --- accepted tokens --------------------------------------------------------------------------


def test_a_supabase_token_maps_to_its_hub_user_and_works_on_the_api(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    user_id = member_of_one_org(settings.database_url)
    token = hs256(claims(project, email_verified=True))

    response = hub.get("/api/v1/runs", headers=bearer(token))

    assert response.status_code == 200, response.text
    (identity,) = rows(settings.database_url, select(OAuthIdentity))
    assert (identity.OAuthIdentity.provider, identity.OAuthIdentity.subject) == ("supabase", SUB)
    assert identity.OAuthIdentity.user_id == user_id
    assert hub.get("/api/v1/runs", headers=bearer(token)).status_code == 200
    assert count(settings.database_url, OAuthIdentity) == 1


def test_a_token_signed_with_the_projects_published_es256_key_is_accepted(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    member_of_one_org(settings.database_url)
    token = es256(claims(project, email_verified=True), project.supabase_keys[0])

    for _ in range(5):
        assert hub.get("/api/v1/runs", headers=bearer(token)).status_code == 200

    assert project.fetches("/auth/v1/.well-known/jwks.json") == 1  # cached, not per request


def test_the_role_of_the_membership_applies(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    member_of_one_org(settings.database_url, role=Role.VIEWER)
    token = hs256(claims(project, email_verified=True))

    response = hub.post("/api/v1/ingest/batch", json={}, headers=bearer(token))

    assert_problem(response, 403, "permission_denied")


def test_a_newcomer_is_made_a_user_but_belongs_to_no_org(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    token = hs256(claims(project))

    assert_problem(hub.get("/api/v1/runs", headers=bearer(token)), 403, "no_membership")

    (user,) = rows(settings.database_url, select(User))
    assert (user.User.email, user.User.name, user.User.password_hash) == (
        "grace@example.com",
        "Grace Hopper",
        None,
    )
    (identity,) = rows(settings.database_url, select(OAuthIdentity.user_id))
    assert identity.user_id == user.User.id


def test_a_newcomer_accepts_an_invitation_signed_in_with_their_supabase_token(
    hub: Client, project: LocalIdentityProvider, settings: Settings, mail_dir: Path
) -> None:
    token = bearer(hs256(claims(project, email_verified=True)))
    assert_problem(hub.get("/api/v1/runs", headers=token), 403, "no_membership")
    org = make_org(settings.database_url, "Navy Labs")
    hub.post(
        "/api/v1/invitations",
        json={"email": "grace@example.com", "role": "member"},
        headers=bearer(org.key),
    )
    invitation = invitation_token(mailbox(mail_dir)[-1])

    anonymous = hub.post("/api/v1/invitations/accept", json={"token": invitation})
    accepted = hub.post("/api/v1/invitations/accept", json={"token": invitation}, headers=token)

    assert_problem(anonymous, 401, "sign_in_required")
    assert accepted.status_code == 200, accepted.text
    assert hub.get("/api/v1/runs", headers=token).status_code == 200


def test_the_org_header_chooses_among_the_users_orgs(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    url = settings.database_url
    navy, harvard, elsewhere = (make_org(url, name).org_id for name in ("Navy", "Harvard", "Else"))
    People(url, navy).add(Role.MEMBER, email="grace@example.com")
    People(url, harvard).add(Role.VIEWER, email="grace@example.com")
    for org_id, agent in ((navy, "cobol"), (harvard, "mark-i"), (elsewhere, "secret")):
        with seeded(url, org_id) as seed:
            seed.agent(agent, first_seen_at=T0, last_seen_at=T0)
    token = hs256(claims(project, email_verified=True))

    def agents(org: str | None) -> Any:
        return hub.get("/api/v1/agents", headers=bearer(token, org=org))

    assert_problem(agents(None), 400, "org_required")
    assert [agent["name"] for agent in agents("navy").json()["items"]] == ["cobol"]
    assert [agent["name"] for agent in agents(str(harvard)).json()["items"]] == ["mark-i"]
    assert_problem(agents("else"), 403, "not_a_member")
    assert_problem(agents(str(uuid.uuid4())), 403, "not_a_member")


# --- linking by email -------------------------------------------------------------------------


def test_an_email_the_token_vouches_for_links_the_existing_account(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    user_id = member_of_one_org(settings.database_url)
    vouched = {
        "a custom access token hook's claim": claims(project, email_verified=True),
        "app_metadata (admin only)": claims(
            project, app_metadata={"provider": "email", "email_verified": True}
        ),
    }
    for how, body in vouched.items():
        body["sub"] = str(uuid.uuid4())
        response = hub.get("/api/v1/runs", headers=bearer(hs256(body)))
        assert response.status_code == 200, how

    linked = rows(settings.database_url, select(OAuthIdentity.user_id))
    assert [row.user_id for row in linked] == [user_id, user_id]


def test_user_metadata_never_vouches_for_an_email(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    """``user_metadata`` is written by the user themselves: claiming someone's address there
    must not reach their account."""
    member_of_one_org(settings.database_url)
    token = hs256(claims(project))  # user_metadata.email_verified is true, nothing else is

    assert_problem(hub.get("/api/v1/runs", headers=bearer(token)), 403, "email_not_verified")

    assert count(settings.database_url, OAuthIdentity) == 0


def test_a_phone_only_user_cannot_be_made_without_an_email(
    hub: Client, project: LocalIdentityProvider
) -> None:
    token = hs256(claims(project, email="", phone="15551234567"))

    assert_problem(hub.get("/api/v1/runs", headers=bearer(token)), 403, "email_required")


# --- refused tokens ---------------------------------------------------------------------------


def _tampered(project: LocalIdentityProvider) -> str:
    header, _, signature = hs256(claims(project)).split(".")
    forged = hs256(claims(project, sub=str(uuid.uuid4()))).split(".")[1]
    return f"{header}.{forged}.{signature}"


def _alg_none(project: LocalIdentityProvider) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims(project))}."


REFUSED: dict[str, tuple[Callable[[LocalIdentityProvider], str], int, str]] = {
    "expired": (
        lambda p: hs256(claims(p, exp=int(time.time()) - 120)),
        401,
        "token_expired",
    ),
    "another audience": (lambda p: hs256(claims(p, aud="anon")), 401, "wrong_audience"),
    "another project": (
        lambda p: hs256(claims(p, iss="https://other.supabase.co/auth/v1")),
        401,
        "wrong_issuer",
    ),
    "tampered": (_tampered, 401, "invalid_token"),
    "another secret": (lambda p: hs256(claims(p), secret="x" * 40), 401, "invalid_token"),
    "alg none": (_alg_none, 401, "invalid_token"),
    "not a JWT": (lambda p: "not-a-jwt", 401, "invalid_token"),
    "unknown kid": (
        lambda p: es256(claims(p), es256_key("unpublished")),
        401,
        "unknown_signing_key",
    ),
    "published kid, other key": (
        lambda p: es256(claims(p), es256_key("sb-key-1")),
        401,
        "invalid_token",
    ),
    "the anon key": (lambda p: hs256(claims(p, role="anon")), 401, "wrong_role"),
    "service role": (lambda p: hs256(claims(p, role="service_role")), 401, "wrong_role"),
    "no subject": (lambda p: hs256(claims(p, sub=None)), 401, "invalid_token"),
    "anonymous user": (
        lambda p: hs256(claims(p, is_anonymous=True, email="")),
        403,
        "anonymous_not_allowed",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_token_that_does_not_check_out_is_refused_and_changes_nothing(
    hub: Client, project: LocalIdentityProvider, settings: Settings, case: str
) -> None:
    member_of_one_org(settings.database_url)
    make, status, code = REFUSED[case]

    assert_problem(hub.get("/api/v1/runs", headers=bearer(make(project))), status, code)

    assert count(settings.database_url, OAuthIdentity) == 0


def test_hs256_tokens_are_refused_when_only_the_jwks_is_configured(
    settings: Settings, project: LocalIdentityProvider
) -> None:
    member_of_one_org(settings.database_url)
    with client_with(settings, supabase_url=project.base_url) as hub:  # no JWT secret
        refused = hub.get("/api/v1/runs", headers=bearer(hs256(claims(project))))
        accepted = hub.get(
            "/api/v1/runs",
            headers=bearer(es256(claims(project, email_verified=True), project.supabase_keys[0])),
        )

    assert_problem(refused, 401, "invalid_token")
    assert accepted.status_code == 200, accepted.text


def test_rotated_keys_are_fetched_again_but_unknown_kids_do_not_hammer_the_project(
    hub: Client, project: LocalIdentityProvider, settings: Settings
) -> None:
    member_of_one_org(settings.database_url)
    first = project.supabase_keys[0]
    assert (
        hub.get(
            "/api/v1/runs", headers=bearer(es256(claims(project, email_verified=True), first))
        ).status_code
        == 200
    )

    rotated = es256_key("sb-key-2")
    project.supabase_keys.append(rotated)
    response = hub.get("/api/v1/runs", headers=bearer(es256(claims(project), rotated)))
    assert response.status_code == 200, response.text
    assert project.fetches("/auth/v1/.well-known/jwks.json") == 2

    for attempt in range(3):
        stranger = es256(claims(project), es256_key(f"made-up-{attempt}"))
        assert_problem(
            hub.get("/api/v1/runs", headers=bearer(stranger)), 401, "unknown_signing_key"
        )
    assert project.fetches("/auth/v1/.well-known/jwks.json") == 2


def test_an_unreachable_project_is_unavailable_not_unauthorized(settings: Settings) -> None:
    with client_with(settings, supabase_url="http://127.0.0.1:9") as hub:
        token = es256(
            {"iss": "http://127.0.0.1:9/auth/v1", "sub": SUB, "aud": "authenticated"},
            es256_key("k"),
        )
        response = hub.get("/api/v1/runs", headers=bearer(token))

    assert_problem(response, 503, "identity_provider_unavailable")


# --- the hub's own tokens, and Supabase switched off ------------------------------------------


def test_the_hubs_own_tokens_keep_their_own_errors(
    hub: Client, supabase_settings: Settings
) -> None:
    claims_ = {"sub": str(uuid.uuid4()), "org": str(uuid.uuid4()), "sid": str(uuid.uuid4())}
    expired = encode_token(supabase_settings.secret_key, "access", claims_, ttl=-1)

    assert_problem(hub.get("/api/v1/runs", headers=bearer(expired)), 401, "token_expired")


def test_supabase_tokens_mean_nothing_when_supabase_is_not_configured(
    client: Client, settings: Settings
) -> None:
    member_of_one_org(settings.database_url)
    token = hs256(
        {
            "iss": "https://x.supabase.co/auth/v1",
            "sub": SUB,
            "aud": "authenticated",
            "role": "authenticated",
        }
    )

    assert_problem(client.get("/api/v1/runs", headers=bearer(token)), 401, "invalid_token")
    assert count(settings.database_url, OAuthIdentity) == 0


def test_a_supabase_url_that_is_not_one_stops_the_app() -> None:
    with pytest.raises(ValueError, match="AGENTOPS_SUPABASE_URL"):
        create_app(Settings(database_url="sqlite:///unused.db", supabase_url="project.supabase.co"))


# --- concurrency ------------------------------------------------------------------------------


async def test_a_newcomers_first_requests_at_once_make_one_user(settings: Settings) -> None:
    engine = create_async_db_engine(settings.database_url, tenant_isolation=True)
    identity = ExternalIdentity("supabase", SUB, "grace@example.com", email_verified=False)

    async def first_request() -> Exception | None:
        async with AsyncSession(engine, sync_session_class=TenantSession) as session:
            try:
                await member_for_identity(session, identity, org=None)
            except Forbidden as refusal:  # the newcomer has no org yet: every request says so
                return refusal
        return None

    try:
        answers = await asyncio.gather(*(first_request() for _ in range(6)))
    finally:
        await engine.dispose()

    assert [getattr(answer, "code", None) for answer in answers] == ["no_membership"] * 6
    assert count(settings.database_url, User) == 1
    assert count(settings.database_url, OAuthIdentity) == 1
