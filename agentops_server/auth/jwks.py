"""Public signing keys of an identity provider (a JWKS document), fetched once and cached.

OIDC providers and Supabase publish the keys their tokens are signed with at a JWKS URL. Fetching
it on every request would make each sign-in or API call wait on the provider, so the key set is
kept for ``max_age`` seconds. A token naming a key id the cache does not know may mean the
provider rotated its keys: the set is fetched again at once, but such forced refetches happen at
most once every ``refetch_interval`` seconds, so tokens with made-up key ids cannot turn the hub
into a traffic generator against the provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

__all__ = ["JwksCache", "JwksUnavailable", "UnknownSigningKey"]

FETCH_TIMEOUT = 10.0
"""Seconds to wait for a provider's JWKS document."""


class UnknownSigningKey(Exception):
    """The token names a key the provider does not publish (even after a fresh fetch)."""


class JwksUnavailable(Exception):
    """The JWKS document could not be fetched or read."""


class JwksCache:
    """The key set at ``url``, cached; :meth:`key` finds a token's signing key by its ``kid``.

    Example::

        keys = JwksCache("https://project.supabase.co/auth/v1/.well-known/jwks.json")
        key = await keys.key(kid)  # fetched on first use, then from memory
    """

    def __init__(
        self,
        url: str,
        *,
        max_age: float = 600.0,
        refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.max_age = max_age
        self.refetch_interval = refetch_interval
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._forced_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> Key:
        """The published key named ``kid`` (None: the only key of the set).

        Raises :class:`UnknownSigningKey` or :class:`JwksUnavailable`.
        """
        now = self._clock()
        if self._keys is None or now - self._fetched_at >= self.max_age:
            await self._refresh(stale=self._keys)
        found = self._find(kid)
        if found is not None:
            return found
        if self._forced_at is not None and now - self._forced_at < self.refetch_interval:
            raise UnknownSigningKey(f"No published signing key has the id {kid!r}.")
        self._forced_at = now
        await self._refresh(stale=self._keys)
        found = self._find(kid)
        if found is None:
            raise UnknownSigningKey(f"No published signing key has the id {kid!r}.")
        return found

    def _find(self, kid: str | None) -> Key | None:
        if self._keys is None:
            return None
        if kid is None:
            keys = list(self._keys)
            return keys[0] if len(keys) == 1 else None
        return next((key for key in self._keys if key.kid == kid), None)

    async def _refresh(self, *, stale: KeySet | None) -> None:
        async with self._lock:
            if self._keys is not stale:
                return  # another request refreshed the set while this one waited
            try:
                keys = await self._fetch()
            except JwksUnavailable:
                if self._keys is None:
                    raise
                # Keep verifying with the keys we have; try the provider again a little later.
                self._fetched_at = self._clock() - self.max_age + self.refetch_interval
                return
            self._keys = keys
            self._fetched_at = self._clock()

    async def _fetch(self) -> KeySet:
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
                response.raise_for_status()
                return KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, TypeError, KeyError, JoseError) as exc:
            raise JwksUnavailable(f"Could not read the signing keys at {self.url}: {exc}") from exc
