"""A cache of answers computed per org, which the org's next ingest makes stale.

On Redis when ``settings.redis_url`` is set, so every hub process and worker shares it (a
worker's rollup forgets what the hubs cached); in the process otherwise. Each entry is keyed
by the org as well as by the query (a cache keyed by path and query alone would answer one
org's question with another's data), under the org's current generation: :meth:`StatsCache.
forget` starts a new generation, so every entry of the org is stale at once without a scan.

    stats = await cache.get_or_compute(org_id, f"agent:{agent_id}", AgentStats, compute)
    await cache.forget(org_id)  # after a rollup of the org changed

An unreachable Redis never fails a read: the answer is computed and not kept.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentops_server.settings import Settings

__all__ = ["StatsCache", "create_stats_cache"]

logger = logging.getLogger("agentops_server.stats_cache")
T = TypeVar("T")

_NAMESPACE = "agentops:stats"
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class StatsCache:
    """Answers per org and query in ``store``, kept ``ttl`` seconds at most."""

    def __init__(self, store: Store, *, ttl: int = 300, redis: Redis | None = None) -> None:
        self._store = store
        self._ttl = ttl
        self._redis = redis

    async def get_or_compute(
        self,
        org_id: uuid.UUID,
        query: str,
        kind: type[T],
        compute: Callable[[], Awaitable[T]],
    ) -> T:
        """The cached answer to ``query`` for the org, or ``compute()``'s, then kept."""
        try:
            generation = await self._generation(org_id)
            key = f"{org_id}:{generation}:{query}"
            cached = await self._store.get(key)
        except _UNREACHABLE as exc:
            logger.warning("stats cache: unreachable (%s); computing", exc)
            return await compute()
        if cached is not None:
            return msgspec.json.decode(cached, type=kind)
        answer = await compute()
        try:
            await self._store.set(key, msgspec.json.encode(answer), expires_in=self._ttl)
        except _UNREACHABLE as exc:
            logger.warning("stats cache: unreachable (%s); not kept", exc)
        return answer

    async def forget(self, org_id: uuid.UUID) -> None:
        """Make every answer kept for the org stale."""
        try:
            await self._store.set(f"{org_id}:generation", uuid.uuid4().hex, expires_in=None)
        except _UNREACHABLE as exc:  # its entries expire within the ttl
            logger.warning("stats cache: unreachable (%s); org %s not forgotten", exc, org_id)

    async def close(self) -> None:
        """Release the connection to Redis, if any (the app's shutdown)."""
        if self._redis is not None:
            await self._redis.aclose()

    async def _generation(self, org_id: uuid.UUID) -> str:
        value = await self._store.get(f"{org_id}:generation")
        return "0" if value is None else value.decode()


def create_stats_cache(settings: Settings) -> StatsCache:
    """A cache on Redis when ``settings.redis_url`` is set, in the process otherwise."""
    if settings.redis_url is None:
        return StatsCache(MemoryStore())
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
    return StatsCache(RedisStore(redis, namespace=_NAMESPACE), redis=redis)
