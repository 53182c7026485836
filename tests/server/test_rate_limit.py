"""Rate limits: the limiter on memory and on the real Redis at 127.0.0.1:6379, the org and caller
limits through the app, and one limit held by two real hub processes sharing one Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from agentops_server import Settings
from agentops_server.backends import RateLimiter, create_rate_limiter
from agentops_server.services.orgs import IssuedKey
from tests.server.api import Client, assert_problem, bearer, client_with
from tests.server.conftest import make_org
from tests.server.principals import limited_key
from tests.server.servers import hub_process

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
