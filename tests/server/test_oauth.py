"""Sign-in with OAuth/OIDC providers, against a real local provider (tests/server/oidc_provider.py)
that the tests run: the test client plays the browser, following the redirects."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import select

from agentops_server import Settings, create_app
from agentops_server.auth.oauth import OAuthConfigError, OAuthProviders
from agentops_server.auth.oauth_providers import GitHubProvider, OidcProvider
from agentops_server.db.models import (
    AuditEvent,
    Membership,
    OAuthIdentity,
    Org,
    User,
    UserSession,
)
from agentops_server.security.permissions import Role
from agentops_server.security.tokens import encode_token
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.conftest import make_org
from tests.server.database import count, rows
from tests.server.external_identity import browser_sign_in, hub_path, provider_leg
from tests.server.oidc_provider import CLIENT_ID, CLIENT_SECRET, LocalIdentityProvider
from tests.server.principals import PASSWORD, People, add_user

PUBLIC_URL = "http://localhost:8000"
CALLBACK = "/api/v1/auth/oauth/corp/callback"


@pytest.fixture
def idp(served_provider: LocalIdentityProvider) -> LocalIdentityProvider:
    served_provider.reset()
    return served_provider


def providers_json(idp: LocalIdentityProvider, **overrides: dict[str, Any]) -> str:
    """``corp`` (generic OIDC), ``google`` and ``github`` (presets), all at the local provider."""
    client = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    config: dict[str, Any] = {
        "corp": {
            "type": "oidc",
            "label": "Corp SSO",
            "server_metadata_url": idp.metadata_url,
            **client,
        },
        "google": {"server_metadata_url": idp.metadata_url, **client},
        "github": {
            "authorize_url": f"{idp.base_url}/authorize",
            "token_url": f"{idp.base_url}/token",
            "api_base_url": idp.base_url,
            **client,
        },
    }
    for name, change in overrides.items():
        config[name] = {**config.get(name, {}), **change}
    return json.dumps(config)


@pytest.fixture
def oauth_settings(settings: Settings, idp: LocalIdentityProvider) -> Settings:
    return dataclasses.replace(settings, oauth_providers=providers_json(idp), public_url=PUBLIC_URL)


@pytest.fixture
def hub(oauth_settings: Settings) -> Iterator[Client]:
    with client_with(oauth_settings) as client:
        yield client


def sign_in(hub: Client, provider: str = "corp", **params: str) -> httpx.Response:
    return browser_sign_in(hub, provider, PUBLIC_URL, params=params or None)


def signed_in(hub: Client, provider: str = "corp", **params: str) -> dict[str, Any]:
    response = sign_in(hub, provider, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- providers and the start of a sign-in -----------------------------------------------------


def test_providers_are_listed_to_anyone(hub: Client) -> None:
    response = hub.get("/api/v1/auth/oauth/providers")
    assert response.status_code == 200, response.text
    listed = {entry["name"]: entry for entry in response.json()["providers"]}
    assert set(listed) == {"corp", "google", "github"}
    assert listed["corp"] == {
        "name": "corp",
        "label": "Corp SSO",
        "kind": "oidc",
        "authorize_url": "/api/v1/auth/oauth/corp/authorize",
    }
    assert (listed["google"]["label"], listed["github"]["kind"]) == ("Google", "github")


def test_authorize_redirects_to_the_provider_with_pkce_a_nonce_and_a_browser_bound_state(
    hub: Client, idp: LocalIdentityProvider
) -> None:
    response = hub.get("/api/v1/auth/oauth/corp/authorize", follow_redirects=False)

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{idp.base_url}/authorize"
    query = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == PUBLIC_URL + CALLBACK
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["nonce"]
    assert query["state"]
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("agentops_oauth=")
    assert f"Path={CALLBACK}" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # the hub's public URL is http:// here


def test_the_pkce_verifier_never_travels_through_the_browser(
    hub: Client, idp: LocalIdentityProvider
) -> None:
    signed_in(hub)

    verifier = idp.token_requests[-1]["code_verifier"]
    authorize = idp.authorize_requests[-1]
    assert verifier not in json.dumps(authorize)
    assert verifier not in _state_claims(authorize["state"]).values()
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == authorize["code_challenge"]


def test_unknown_provider_is_not_found(hub: Client) -> None:
    for step in ("authorize", "callback"):
        response = hub.get(f"/api/v1/auth/oauth/nope/{step}", follow_redirects=False)
        assert_problem(response, 404, "unknown_provider")


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil", "runs"])
def test_redirect_to_must_be_a_path_on_the_hub(hub: Client, target: str) -> None:
    response = hub.get(
        "/api/v1/auth/oauth/corp/authorize",
        params={"redirect_to": target},
        follow_redirects=False,
    )
    assert_problem(response, 400, "invalid_redirect")


def test_redirect_to_comes_back_with_the_tokens(hub: Client) -> None:
    assert signed_in(hub, redirect_to="/runs?agent=a")["redirect_to"] == "/runs?agent=a"
    assert signed_in(hub)["redirect_to"] is None


# --- the callback: a newcomer, a returning user, a linked account -----------------------------


def test_first_sign_in_makes_the_user_a_personal_org_and_a_session(
    hub: Client, settings: Settings
) -> None:
    body = signed_in(hub)

    url = settings.database_url
    (user,) = rows(url, select(User))
    assert (user.User.email, user.User.name, user.User.password_hash) == (
        "ada@example.com",
        "Ada Lovelace",
        None,
    )
    assert body["user_id"] == str(user.User.id)
    assert body["new_user"] is True
    (identity,) = rows(url, select(OAuthIdentity))
    assert (identity.OAuthIdentity.provider, identity.OAuthIdentity.subject) == (
        "corp",
        "idp-user-1",
    )
    (org,) = rows(url, select(Org))
    assert str(org.Org.id) == body["org_id"]
    assert (org.Org.name, org.Org.slug) == ("Ada Lovelace", "ada-lovelace")
    (membership,) = rows(url, select(Membership))
    assert (membership.Membership.user_id, membership.Membership.role) == (user.User.id, "owner")
    audited = rows(url, select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.target_id))
    assert sorted(audited) == [
        ("member.added", user.User.id, str(user.User.id)),
        ("org.created", user.User.id, body["org_id"]),
    ]
    (session,) = rows(url, select(UserSession))
    assert str(session.UserSession.id) == body["session_id"]
    assert session.UserSession.method == "oauth:corp"
    assert body["token_type"] == "bearer"
    assert body["refresh_token"].startswith("rt_")
    runs = hub.get("/api/v1/runs", headers=bearer(body["access_token"]))
    assert runs.status_code == 200, runs.text


def test_a_newcomer_gets_no_personal_org_when_sign_up_is_closed(
    oauth_settings: Settings, settings: Settings
) -> None:
    with client_with(oauth_settings, signup_open=False) as closed:
        refused = sign_in(closed)

    assert_problem(refused, 403, "no_membership")
    assert (count(settings.database_url, User), count(settings.database_url, Org)) == (0, 0)


def test_a_member_signs_in_through_a_provider_when_sign_up_is_closed(
    oauth_settings: Settings, settings: Settings
) -> None:
    org_id = make_org(settings.database_url, "Analytical Engines").org_id
    People(settings.database_url, org_id).add(Role.MEMBER, email="ada@example.com")

    with client_with(oauth_settings, signup_open=False) as closed:
        body = signed_in(closed)

    assert body["org_id"] == str(org_id)


def test_signing_in_again_finds_the_same_user_and_org(hub: Client, settings: Settings) -> None:
    first = signed_in(hub)
    second = signed_in(hub)

    assert (second["user_id"], second["org_id"]) == (first["user_id"], first["org_id"])
    assert second["new_user"] is False
    assert second["session_id"] != first["session_id"]
    assert (count(settings.database_url, User), count(settings.database_url, Org)) == (1, 1)


def test_a_verified_email_links_the_existing_account_and_signs_into_its_org(
    hub: Client, settings: Settings
) -> None:
    url = settings.database_url
    org_id = make_org(url, "Analytical Engines").org_id
    user_id = (
        People(url, org_id).add(Role.ADMIN, email="ada@example.com", password=PASSWORD).user_id
    )

    body = signed_in(hub)

    assert (body["user_id"], body["org_id"], body["new_user"]) == (str(user_id), str(org_id), False)
    (identity,) = rows(url, select(OAuthIdentity))
    assert identity.OAuthIdentity.user_id == user_id
    assert count(url, Org) == 1


def test_an_unverified_email_is_refused_and_nothing_is_made(
    hub: Client, idp: LocalIdentityProvider, settings: Settings
) -> None:
    idp.user["email_verified"] = False

    assert_problem(sign_in(hub), 403, "email_not_verified")

    assert count(settings.database_url, User) == 0
    assert count(settings.database_url, OAuthIdentity) == 0


def test_an_unverified_email_never_takes_over_an_existing_account(
    hub: Client, idp: LocalIdentityProvider, settings: Settings
) -> None:
    add_user(settings.database_url, "ada@example.com", password=PASSWORD)
    idp.user["email_verified"] = "false"

    assert_problem(sign_in(hub), 403, "email_not_verified")

    assert count(settings.database_url, OAuthIdentity) == 0


def test_the_email_comes_from_userinfo_when_the_id_token_lacks_it(
    hub: Client, idp: LocalIdentityProvider, settings: Settings
) -> None:
    idp.email_in_id_token = False

    signed_in(hub)

    assert idp.fetches("/userinfo") == 1
    (user,) = rows(settings.database_url, select(User.email))
    assert user.email == "ada@example.com"


def test_org_chooses_which_of_the_users_orgs_to_sign_into(hub: Client, settings: Settings) -> None:
    url = settings.database_url
    first, second = make_org(url, "First").org_id, make_org(url, "Second").org_id
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    People(url, first).add(Role.MEMBER, email="ada@example.com", joined=yesterday)
    People(url, second).add(Role.VIEWER, email="ada@example.com")

    assert signed_in(hub)["org_id"] == str(first)
    assert signed_in(hub, org="second")["org_id"] == str(second)


def test_org_the_user_is_not_a_member_of_is_refused_and_nothing_is_made(
    hub: Client, settings: Settings
) -> None:
    make_org(settings.database_url, "Elsewhere")

    assert_problem(sign_in(hub, org="elsewhere"), 403, "not_a_member")

    assert count(settings.database_url, User) == 0
    assert count(settings.database_url, Org) == 1


def test_a_taken_slug_gives_the_personal_org_another(hub: Client, settings: Settings) -> None:
    make_org(settings.database_url, "Ada Lovelace")

    body = signed_in(hub)

    (org,) = rows(
        settings.database_url, select(Org.slug).where(Org.id == uuid.UUID(body["org_id"]))
    )
    assert org.slug.startswith("ada-lovelace-")
    assert len(org.slug) == len("ada-lovelace-") + 6


# --- the callback: state, replay, provider answers --------------------------------------------


def test_a_callback_in_another_browser_is_refused(hub: Client, oauth_settings: Settings) -> None:
    """Login CSRF: an attacker's own callback URL, sent to a victim, does not sign them in."""
    callback = provider_leg(hub, "corp")

    with client_with(oauth_settings) as victim:
        response = victim.get(hub_path(callback, PUBLIC_URL))

    problem = assert_problem(response, 400, "invalid_oauth_state")
    assert "another browser" in problem["detail"]


def test_a_replayed_callback_is_refused(hub: Client) -> None:
    callback = hub_path(provider_leg(hub, "corp"), PUBLIC_URL)
    assert hub.get(callback).status_code == 200

    assert_problem(hub.get(callback), 400, "invalid_oauth_state")


def test_forged_expired_or_misdirected_states_are_refused(
    hub: Client, oauth_settings: Settings
) -> None:
    callback = hub_path(provider_leg(hub, "corp"), PUBLIC_URL)
    path, query = callback.split("?")
    params = {name: values[0] for name, values in parse_qs(query).items()}
    claims = _state_claims(params["state"])
    secret = oauth_settings.secret_key
    states = {
        "forged": encode_token("another-secret", "oauth_state", claims, ttl=600),
        "expired": encode_token(secret, "oauth_state", claims, ttl=-1),
        "other provider": encode_token(secret, "oauth_state", {**claims, "prv": "google"}, ttl=600),
        "another purpose": encode_token(secret, "access", claims, ttl=600),
        "missing": "",
    }
    for why, state in states.items():
        response = hub.get(path, params={**params, "state": state})
        assert response.status_code == 400, why
        assert_problem(response, 400, "invalid_oauth_state")

    assert hub.get(callback).status_code == 200  # the genuine one still works


def test_the_user_saying_no_at_the_provider(hub: Client, idp: LocalIdentityProvider) -> None:
    idp.deny = True

    problem = assert_problem(sign_in(hub), 403, "oauth_denied")
    assert problem["provider_error"] == "access_denied"


def test_a_provider_refusing_the_client_is_a_provider_error(
    settings: Settings, idp: LocalIdentityProvider
) -> None:
    wrong = providers_json(idp, corp={"client_secret": "wrong"})
    with client_with(settings, public_url=PUBLIC_URL, oauth_providers=wrong) as hub:
        problem = assert_problem(sign_in(hub), 502, "oauth_provider_error")

    assert problem["provider_error"] == "invalid_client"
    assert count(settings.database_url, User) == 0


def test_an_unreachable_provider_is_a_provider_error(settings: Settings) -> None:
    closed = "http://127.0.0.1:9/.well-known/openid-configuration"  # discard: nothing listens
    config = {
        "corp": {
            "type": "oidc",
            "server_metadata_url": closed,
            "client_id": "a",
            "client_secret": "b",
        }
    }
    # Building the app fetches nothing: only the sign-in asks the provider, and fails.
    with client_with(settings, oauth_providers=json.dumps(config)) as hub:
        response = hub.get("/api/v1/auth/oauth/corp/authorize", follow_redirects=False)

    assert_problem(response, 502, "oauth_provider_error")


def _bad_signature(idp: LocalIdentityProvider) -> None:
    idp.signing_key = RSAKey.generate_key(2048, parameters={"kid": str(idp.key.kid)})


def _unknown_key(idp: LocalIdentityProvider) -> None:
    idp.signing_key = RSAKey.generate_key(2048, parameters={"kid": "not-published"})


ID_TOKEN_DEFECTS = {
    "another audience": lambda idp: idp.id_token_claims.update(aud="someone-else"),
    "another issuer": lambda idp: idp.id_token_claims.update(iss="https://evil.example"),
    "expired": lambda idp: idp.id_token_claims.update(exp=int(time.time()) - 3600),
    "another nonce": lambda idp: idp.id_token_claims.update(nonce="replayed"),
    "no nonce": lambda idp: idp.id_token_claims.update(nonce=None),
    "several audiences, not authorized for us": lambda idp: idp.id_token_claims.update(
        aud=[CLIENT_ID, "another"], azp="another"
    ),
    "bad signature": _bad_signature,
    "unpublished key": _unknown_key,
}


@pytest.mark.parametrize("defect", list(ID_TOKEN_DEFECTS))
def test_an_id_token_that_proves_nothing_is_refused(
    hub: Client, idp: LocalIdentityProvider, settings: Settings, defect: str
) -> None:
    ID_TOKEN_DEFECTS[defect](idp)

    assert_problem(sign_in(hub), 401, "invalid_id_token")

    assert count(settings.database_url, User) == 0


def test_several_audiences_are_fine_when_we_are_the_authorized_party(
    hub: Client, idp: LocalIdentityProvider
) -> None:
    idp.id_token_claims.update(aud=[CLIENT_ID, "another"], azp=CLIENT_ID)

    signed_in(hub)


def test_discovery_and_keys_are_fetched_once(hub: Client, idp: LocalIdentityProvider) -> None:
    for _ in range(3):
        signed_in(hub)

    assert idp.fetches("/.well-known/openid-configuration") == 1
    assert idp.fetches("/jwks") == 1


# --- presets ----------------------------------------------------------------------------------


def test_github_signs_in_with_the_primary_verified_email(
    hub: Client, idp: LocalIdentityProvider, settings: Settings
) -> None:
    idp.github_emails = [
        {"email": "old@example.com", "primary": False, "verified": True},
        {"email": "ada@example.com", "primary": True, "verified": True},
    ]

    body = signed_in(hub, "github")

    (identity,) = rows(settings.database_url, select(OAuthIdentity))
    assert (identity.OAuthIdentity.provider, identity.OAuthIdentity.subject) == ("github", "4242")
    assert identity.OAuthIdentity.email == "ada@example.com"
    token_request = idp.token_requests[-1]
    assert token_request["client_secret"] == CLIENT_SECRET  # GitHub takes the secret in the form
    assert token_request["code_verifier"]
    assert idp.authorize_requests[-1]["scope"] == "read:user user:email"
    (session,) = rows(settings.database_url, select(UserSession.method))
    assert session.method == "oauth:github"
    assert body["new_user"] is True


def test_github_without_a_verified_primary_email_is_refused(
    hub: Client, idp: LocalIdentityProvider
) -> None:
    idp.github_emails = [
        {"email": "ada@example.com", "primary": True, "verified": False},
        {"email": "other@example.com", "primary": False, "verified": True},
    ]

    assert_problem(sign_in(hub, "github"), 403, "email_not_verified")


def test_github_without_any_email_is_refused(
    hub: Client, idp: LocalIdentityProvider, settings: Settings
) -> None:
    idp.github_emails = []

    assert_problem(sign_in(hub, "github"), 403, "email_required")

    assert count(settings.database_url, User) == 0


def test_google_discovers_its_endpoints_at_the_configured_url(
    hub: Client, settings: Settings
) -> None:
    signed_in(hub, "google")

    (identity,) = rows(settings.database_url, select(OAuthIdentity.provider))
    assert identity.provider == "google"


def test_one_person_may_sign_in_with_several_providers(hub: Client, settings: Settings) -> None:
    users = {signed_in(hub, name)["user_id"] for name in ("corp", "google", "github")}

    assert len(users) == 1
    assert count(settings.database_url, OAuthIdentity) == 3


# --- configuration (no database) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"corp": {"client_id": "a", "client_secret": "b"}}', "['corp'].type is required"),
        (
            '{"corp": {"type": "oidc", "client_id": "a", "client_secret": "b"}}',
            "['corp'].server_metadata_url: Field required",
        ),
        ('{"github": {"client_secret": "b"}}', "['github'].client_id: Field required"),
        ('{"github": {"client_id": "", "client_secret": "b"}}', "['github'].client_id: String"),
        (
            '{"github": {"client_id": "a", "client_secret": "b", "scope": "x"}}',
            "['github'].scope: Extra inputs are not permitted",
        ),
        (
            '{"google": {"client_id": "a", "client_secret": "b", "server_metadata_url": "ftp://x"}}',
            "['google'].server_metadata_url: String should match",
        ),
        ('{"x": {"type": "saml", "client_id": "a", "client_secret": "b"}}', "['x'].type"),
        (
            '{"google": {"client_id": "a", "client_secret": "b", "scopes": ["email"]}}',
            "['google'].scopes: Value error, must include 'openid'",
        ),
        ('{"Corp SSO": {"type": "oidc"}}', "a provider name is"),
        ('{"supabase": {"type": "oidc"}}', "reserved"),
    ],
)
def test_a_bad_provider_config_stops_the_app_naming_the_field(config: str, message: str) -> None:
    with pytest.raises(OAuthConfigError, match="AGENTOPS_OAUTH_PROVIDERS") as raised:
        create_app(Settings(database_url="sqlite:///unused.db", oauth_providers=config))

    assert message in str(raised.value)


def test_presets_fill_in_the_providers_urls() -> None:
    client = {"client_id": "a", "client_secret": "b"}
    config = json.dumps({"github": client, "google": client})
    providers = OAuthProviders.from_settings(Settings(oauth_providers=config))

    github, google = providers.get("github"), providers.get("google")
    assert isinstance(github, GitHubProvider)
    assert github.config.authorize_url == "https://github.com/login/oauth/authorize"
    assert isinstance(google, OidcProvider)
    assert google.config.server_metadata_url == (
        "https://accounts.google.com/.well-known/openid-configuration"
    )
    assert providers.get("corp") is None


def _state_claims(state: str) -> dict[str, Any]:
    payload = state.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return {
        name: value for name, value in claims.items() if name not in ("iss", "aud", "iat", "exp")
    }
