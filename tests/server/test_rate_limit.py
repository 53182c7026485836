"""Rate limits: the limiter on memory and on the real Redis at 127.0.0.1:6379, the org and caller
limits through the app, failed authentications of every kind per client address, and one limit
held by two real hub processes sharing one Redis.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from agentops_server import Settings, create_app
from agentops_server.backends import RateLimiter, create_rate_limiter
from agentops_server.security.tokens import encode_access_token
from agentops_server.services.identity.api_keys import IssuedKey
from tests.sdk.fake_hub import free_port
from tests.server.accounts import AUTH, signup
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.conftest import make_org
from tests.server.ingest_events import INGEST, batch, rows, run_event, span_event
from tests.server.principals import limited_key
from tests.server.servers import hub_process, serving

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """A limiter counting in the process, or on the real Redis."""
    redis_url = REDIS_URL if request.param == "redis" else None
    limiter = create_rate_limiter(Settings(redis_url=redis_url))
    yield limiter
    await limiter.close()


@pytest.fixture
def key() -> str:
    """A limit key no other test (or earlier run, on Redis) has counted against."""
    return f"test:{uuid.uuid4()}"


# The limiter


async def test_hits_up_to_the_limit_pass_and_the_next_is_refused(
    limiter: RateLimiter, key: str
) -> None:
    results = [await limiter.hit(key, "3/minute") for _ in range(4)]

    assert [result.allowed for result in results] == [True, True, True, False]
    assert [result.remaining for result in results] == [2, 1, 0, 0]
    assert {result.limit for result in results} == {3}
    assert [result.retry_after for result in results[:3]] == [0, 0, 0]
    refused = results[3]
    assert 1 <= refused.retry_after <= 60
    assert 0 < refused.reset_after <= 60


async def test_with_redis_unreachable_limits_still_hold_counted_in_the_process(key: str) -> None:
    limiter = create_rate_limiter(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        results = [await limiter.hit(key, "2/minute") for _ in range(3)]
        events = await limiter.hit(key, "5/minute", cost=5, approximate=True)
    finally:
        await limiter.close()

    assert [result.allowed for result in results] == [True, True, False]
    assert events.allowed


async def test_a_hit_can_cost_several_and_a_refused_hit_costs_nothing(
    limiter: RateLimiter, key: str
) -> None:
    first = await limiter.hit(key, "5/minute", cost=4)
    too_much = await limiter.hit(key, "5/minute", cost=2)
    last = await limiter.hit(key, "5/minute")

    assert (first.allowed, first.remaining) == (True, 1)
    assert (too_much.allowed, too_much.remaining) == (False, 1)
    assert (last.allowed, last.remaining) == (True, 0)


async def test_clear_forgets_the_hits(limiter: RateLimiter, key: str) -> None:
    await limiter.hit(key, "1/minute")
    assert not (await limiter.hit(key, "1/minute")).allowed

    await limiter.clear(key, "1/minute")

    assert (await limiter.hit(key, "1/minute")).allowed


async def test_each_key_and_each_limit_counts_on_its_own(limiter: RateLimiter, key: str) -> None:
    await limiter.hit(key, "1/minute")

    assert (await limiter.hit(f"{key}:other", "1/minute")).allowed
    assert (await limiter.hit(key, "1/hour")).allowed
    assert not (await limiter.hit(key, "1/minute")).allowed


async def test_peeking_counts_nothing(limiter: RateLimiter, key: str) -> None:
    await limiter.hit(key, "2/minute")

    peeked = [await limiter.peek(key, "2/minute") for _ in range(3)]

    assert [(result.allowed, result.remaining) for result in peeked] == [(True, 1)] * 3
    await limiter.hit(key, "2/minute")
    refused = await limiter.peek(key, "2/minute")
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 1 <= refused.retry_after <= 60


async def test_limiters_on_one_redis_share_their_counts(key: str) -> None:
    limiters = [create_rate_limiter(Settings(redis_url=REDIS_URL)) for _ in range(2)]
    try:
        results = [await limiters[i % 2].hit(key, "3/minute") for i in range(6)]
    finally:
        for limiter in limiters:
            await limiter.close()

    assert [result.allowed for result in results] == [True] * 3 + [False] * 3


def test_a_limit_setting_that_is_not_a_limit_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="rate_limit_org"):
        create_rate_limiter(Settings(rate_limit_org="lots"))


# Through the app


@pytest.fixture
def limited_app(settings: Settings) -> Iterator[Client]:
    """The hub with small limits: 3 requests per key, 5 per org, per minute."""
    with client_with(settings, rate_limit_key="3/minute", rate_limit_org="5/minute") as client:
        yield client


def test_requests_past_the_key_limit_get_a_429_problem_with_retry_after(
    limited_app: Client, auth: dict[str, str]
) -> None:
    passed = [limited_app.get("/api/v1/runs", headers=auth) for _ in range(3)]
    refused = limited_app.get("/api/v1/runs", headers=auth)

    assert [response.status_code for response in passed] == [200, 200, 200]
    assert [response.headers["RateLimit-Remaining"] for response in passed] == ["2", "1", "0"]
    for response in passed:
        assert response.headers["RateLimit-Limit"] == "3"  # the key's: tighter than the org's
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["RateLimit-Reset"]) <= 60
    assert refused.headers["X-Request-ID"]  # answered inside the middleware stack


def test_the_org_limit_is_shared_by_the_keys_of_the_org(
    limited_app: Client, migrated_url: str, org: IssuedKey, auth: dict[str, str]
) -> None:
    second_key = limited_key(migrated_url, org.org_id, scopes=["read"])
    other = bearer(second_key.key)

    statuses = [
        limited_app.get("/api/v1/runs", headers=headers).status_code
        for headers in (auth, other, auth, other, auth)
    ]
    refused = limited_app.get("/api/v1/runs", headers=other)

    assert statuses == [200] * 5
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["RateLimit-Limit"] == "5"  # the org's, exhausted


def test_a_busy_org_does_not_limit_another_org(
    limited_app: Client, migrated_url: str, auth: dict[str, str]
) -> None:
    other_org = make_org(migrated_url, "quiet")
    for _ in range(3):
        limited_app.get("/api/v1/runs", headers=auth)
    assert limited_app.get("/api/v1/runs", headers=auth).status_code == 429

    response = limited_app.get("/api/v1/runs", headers=bearer(other_org.key))

    assert response.status_code == 200
    assert response.headers["RateLimit-Remaining"] == "2"


def test_health_ready_and_schema_are_never_limited(
    limited_app: Client, auth: dict[str, str]
) -> None:
    for path in ("/health", "/ready", "/schema/openapi.json"):
        for _ in range(4):
            response = limited_app.get(path, headers=auth)
            assert response.status_code == 200, response.text
            assert "RateLimit-Limit" not in response.headers


# Ingest: events, not requests


def spans_batch(spans: int) -> dict[str, Any]:
    run = run_event()
    return batch(*[span_event(run) for _ in range(spans - 1)], run)


def test_ingest_is_limited_in_events_per_key_and_a_refused_batch_stores_nothing(
    settings: Settings, auth: dict[str, str], migrated_url: str, org: IssuedKey
) -> None:
    with client_with(settings, rate_limit_ingest="250/minute", rate_limit_key="1/minute") as client:
        first = client.post(INGEST, json=spans_batch(100), headers=auth)
        second = client.post(INGEST, json=spans_batch(100), headers=auth)
        refused = client.post(INGEST, json=spans_batch(100), headers=auth)

    assert [first.status_code, second.status_code] == [200, 200], "not limited per request"
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "250"
    assert len(rows(migrated_url, "spans", org.org_id)) == 2 * 99


def test_ingest_does_not_use_up_the_keys_request_limit(
    settings: Settings, auth: dict[str, str]
) -> None:
    with client_with(settings, rate_limit_key="2/minute") as client:
        ingested = [client.post(INGEST, json=spans_batch(10), headers=auth) for _ in range(5)]
        read = client.get("/api/v1/runs", headers=auth)

    assert [response.status_code for response in ingested] == [200] * 5
    assert read.status_code == 200


async def test_the_event_counter_takes_costs_in_one_hit_on_memory_and_redis(
    limiter: RateLimiter, key: str
) -> None:
    first = await limiter.hit(key, "1000/minute", 600, approximate=True)
    refused = await limiter.hit(key, "1000/minute", 600, approximate=True)
    fits = await limiter.hit(key, "1000/minute", 400, approximate=True)

    assert first.allowed
    assert not refused.allowed, "600 more do not fit in what 600 left"
    assert refused.retry_after >= 1
    assert fits.allowed
    assert fits.remaining == 0


# Failed authentications, per client address


def forged_key(client: Client, org: IssuedKey) -> Any:
    return client.get("/api/v1/runs", headers=bearer(org.key[:-6] + "forged"))


def forged_token(client: Client, org: IssuedKey) -> Any:
    token = encode_access_token(
        "not-the-hubs-secret",
        user_id=uuid.uuid4(),
        org_id=org.org_id,
        session_id=uuid.uuid4(),
        ttl=900,
    )
    return client.get("/api/v1/runs", headers=bearer(token))


def forged_refresh_token(client: Client, org: IssuedKey) -> Any:
    return client.post(f"{AUTH}/refresh", json={"refresh_token": f"rt_{uuid.uuid4().hex}_x"})


def forged_invitation(client: Client, org: IssuedKey) -> Any:
    token = f"inv_{org.org_id.hex}_{uuid.uuid4().hex}_guess"
    return client.post("/api/v1/invitations/accept", json={"token": token, "password": "x"})


def forged_reset_token(client: Client, org: IssuedKey) -> Any:
    token = f"pr_{uuid.uuid4().hex}_{uuid.uuid4().hex}_guess"
    return client.post(
        f"{AUTH}/password/reset", json={"token": token, "new_password": "Tr0ub4dor&3-horse"}
    )


def forged_mfa_token(client: Client, org: IssuedKey) -> Any:
    return client.post(f"{AUTH}/login/mfa", json={"mfa_token": "not-a-token", "code": "123456"})


FORGERIES = {
    "api-key": (forged_key, 401, "invalid_api_key"),
    "access-token": (forged_token, 401, "invalid_token"),
    "refresh-token": (forged_refresh_token, 401, "invalid_refresh_token"),
    "invitation": (forged_invitation, 400, "invalid_invitation"),
    "reset-token": (forged_reset_token, 400, "invalid_reset_token"),
    "mfa-token": (forged_mfa_token, 401, "invalid_mfa_token"),
}


@pytest.mark.parametrize("kind", list(FORGERIES))
def test_credentials_that_are_not_authentic_are_limited_per_address_with_429(
    settings: Settings, org: IssuedKey, kind: str
) -> None:
    forge, status, code = FORGERIES[kind]
    with client_with(settings, rate_limit_auth_failures="3/minute") as client:
        refused = [forge(client, org) for _ in range(3)]
        limited = forge(client, org)

    for response in refused:
        assert_problem(response, status, code)
    assert_problem(limited, 429, "too_many_attempts")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_every_kind_of_failure_counts_against_one_budget_per_address(
    settings: Settings, org: IssuedKey
) -> None:
    with client_with(settings, rate_limit_auth_failures="3/minute") as client:
        for forge in (forged_key, forged_refresh_token, forged_invitation):
            forge(client, org)

        responses = [forge(client, org) for forge, _, _ in FORGERIES.values()]

    for response in responses:
        assert_problem(response, 429, "too_many_attempts")


def test_an_address_out_of_failures_is_refused_before_its_credentials_are_checked(
    settings: Settings, org: IssuedKey
) -> None:
    with client_with(settings, rate_limit_auth_failures="2/minute") as client:
        for _ in range(2):
            forged_key(client, org)

        valid = client.get("/api/v1/runs", headers=bearer(org.key))

    assert_problem(valid, 429, "too_many_attempts")


def test_failures_from_other_addresses_never_lock_a_key_holder_out(
    settings: Settings, org: IssuedKey
) -> None:
    app = create_app(
        dataclasses.replace(
            settings, rate_limit_auth_failures="3/minute", trusted_proxies="127.0.0.1"
        )
    )
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    holder = {"X-Forwarded-For": "198.51.100.7"}
    wrong = bearer(org.key[:-6] + "forged")

    with serving(app) as url:
        attempts = [
            httpx.get(f"{url}/api/v1/runs", headers=wrong | attacker).status_code for _ in range(10)
        ]
        holders = [
            httpx.get(f"{url}/api/v1/runs", headers=bearer(org.key) | holder).status_code
            for _ in range(5)
        ]

    assert attempts == [401] * 3 + [429] * 7
    assert holders == [200] * 5


def test_valid_and_stale_credentials_never_count_as_failures(
    settings: Settings, migrated_url: str, org: IssuedKey
) -> None:
    revoked = limited_key(migrated_url, org.org_id, scopes=["read"], revoked=True)
    with client_with(settings, rate_limit_auth_failures="2/minute") as client:
        ada = signup(client)
        expired = encode_access_token(
            settings.secret_key,
            user_id=ada["user_id"],
            org_id=ada["org_id"],
            session_id=ada["session_id"],
            ttl=-60,
        )
        answers = [
            client.get("/api/v1/runs", headers=headers)
            for headers in [bearer(revoked.key), bearer(expired), bearer(org.key)] * 3
        ]

    assert [response.status_code for response in answers] == [401, 401, 200] * 3
    assert {response.json().get("code") for response in answers[:2]} == {
        "revoked_api_key",
        "token_expired",
    }


# Two hub processes


def test_two_hub_processes_on_one_redis_let_exactly_the_limit_through(migrated_url: str) -> None:
    org = make_org(migrated_url, "busy")
    environment = {
        "AGENTOPS_DATABASE_URL": migrated_url,
        "AGENTOPS_REDIS_URL": REDIS_URL,
        "AGENTOPS_RATE_LIMIT_KEY": "7/hour",
        "AGENTOPS_RATE_LIMIT_ORG": "1000/hour",
    }
    headers = bearer(org.key)

    with (
        hub_process("--no-migrate", environment=environment) as first,
        hub_process("--no-migrate", environment=environment) as second,
    ):

        def status_of_a_request_to(url: str) -> int:
            return httpx.get(f"{url}/api/v1/runs", headers=headers, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(status_of_a_request_to, [first.url, second.url] * 10))

    assert statuses.count(200) == 7  # each process alone would have let 7 through
    assert statuses.count(429) == 13
