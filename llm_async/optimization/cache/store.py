"""``ResponseCache``: a cache of answers over a backend, and the process-wide one.

``get_cache()`` returns the process-wide :class:`ResponseCache`; it answers without ``await``::

    cache = get_cache()
    cached = cache.get(request_key)
    cache.set(request_key, response, ttl=3600)

so it has **sync** ``get``/``set``/``delete``/``clear`` (in-memory backends only) and **async**
``aget``/``aset``/``adelete``/``aclear`` (every backend).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..._clock import Clock, system_clock
from ...errors import ConfigurationError, InvalidRequestError
from .backends import CacheBackend, MemoryBackend, SyncCacheBackend

__all__ = ["CacheStats", "ResponseCache", "check_ttl", "get_cache", "set_cache"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Live counters of a cache (``entries``: ``None`` when the backend cannot tell)."""

    hits: int
    misses: int
    stores: int
    errors: int
    evictions: int
    expirations: int
    entries: int | None

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def check_ttl(ttl: Any, field: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise InvalidRequestError(f"{field} must be a positive number of seconds, got {ttl!r}",
                                  field=field)
    return float(ttl)


class ResponseCache:
    """A cache of answers over a :class:`CacheBackend` (in memory by default).

    The sync calls (``get``, ``set``, ``delete``, ``clear``) work with in-memory backends;
    ``aget``/``aset``/``adelete``/``aclear`` work with every backend (Redis included). ``ttl`` is
    the default time-to-live in seconds (``None``: until evicted); ``set(..., ttl=...)``
    overrides it per entry.
    """

    def __init__(self, backend: CacheBackend | None = None, *, ttl: float | None = 3600.0,
                 max_entries: int = 10_000, clock: Clock = system_clock) -> None:
        self.backend: CacheBackend = backend if backend is not None else MemoryBackend(
            max_entries, clock=clock)
        self.ttl = check_ttl(ttl)
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.errors = 0

    # sync API (in-memory backends) ---------------------------------------------------

    def _sync(self) -> SyncCacheBackend:
        backend = self.backend
        if not isinstance(backend, SyncCacheBackend):
            raise ConfigurationError(
                f"{type(backend).__name__} is async-only: use 'await cache.aget(key)' and "
                "'await cache.aset(key, value, ttl=...)'")
        return backend

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` (in-memory backends only)."""
        value = self._sync().get(key)
        return self._count(value, default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (default: the cache's ``ttl``)."""
        self._sync().set(key, value, self._ttl(ttl))
        self.stores += 1

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        return self._sync().delete(key)

    def clear(self) -> None:
        """Remove every entry."""
        self._sync().clear()

    # async API ----------------------------------------------------------------------------

    async def aget(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        return self._count(await self.backend.aget(key), default)

    async def aset(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (default: the cache's ``ttl``)."""
        await self.backend.aset(key, value, self._ttl(ttl))
        self.stores += 1

    async def adelete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        return await self.backend.adelete(key)

    async def aclear(self) -> None:
        """Remove every entry."""
        await self.backend.aclear()

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self.backend.aclose()

    # ------------------------------------------------------------------------------------

    def _ttl(self, ttl: float | None) -> float | None:
        return self.ttl if ttl is None else check_ttl(ttl)

    def _count(self, value: Any, default: Any) -> Any:
        if value is None:
            self.misses += 1
            return default
        self.hits += 1
        return value

    def statistics(self) -> CacheStats:
        """Hits, misses, stores, backend errors, evictions and size (when known)."""
        backend = self.backend
        mem = backend if isinstance(backend, MemoryBackend) else None
        return CacheStats(
            hits=self.hits, misses=self.misses, stores=self.stores, errors=self.errors,
            evictions=0 if mem is None else mem.evictions,
            expirations=0 if mem is None else mem.expirations,
            entries=None if mem is None else len(mem),
        )

    def __repr__(self) -> str:
        return (f"ResponseCache(backend={self.backend!r}, ttl={self.ttl}, hits={self.hits}, "
                f"misses={self.misses})")


_default_cache: ResponseCache | None = None
_default_lock = threading.Lock()


def get_cache() -> ResponseCache:
    """The process-wide :class:`ResponseCache` (in memory; TTL from ``LLM_CACHE_TTL``).

    Pass it to clients as ``AsyncLLMClient(cache=get_cache())`` to share it with them.
    """
    global _default_cache
    if _default_cache is None:
        with _default_lock:
            if _default_cache is None:
                from ...config import Settings

                _default_cache = ResponseCache(ttl=Settings.from_env().cache_ttl)
    return _default_cache


def set_cache(cache: ResponseCache | None) -> None:
    """Replace the process-wide cache (``None``: build a fresh one on next ``get_cache()``)."""
    global _default_cache
    _default_cache = cache

