"""Where cached answers live.

:class:`MemoryBackend`
    In-process, on :class:`cachetools.TLRUCache`: bounded by entries, least recently used out,
    each entry with its own time-to-live read from an injected clock. Sync and async methods.
:class:`AiocacheBackend`
    Any ``aiocache`` cache. :class:`RedisBackend` builds an aiocache ``RedisCache`` (redis-py
    asyncio underneath) for a cache shared by many processes. Values cross the wire as JSON (a
    :class:`~llm_async.types.ChatResponse` or plain JSON data): never pickle, so a shared Redis
    cannot be turned into code execution.
"""

from __future__ import annotations

import math
import threading
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from cachetools import TLRUCache

from ... import _json
from ..._clock import Clock, system_clock
from ...errors import ConfigurationError, InvalidRequestError
from ...types import ChatResponse

__all__ = [
    "AiocacheBackend",
    "CacheBackend",
    "MemoryBackend",
    "RedisBackend",
    "SyncCacheBackend",
    "decode_value",
    "encode_value",
]


@runtime_checkable
class CacheBackend(Protocol):
    """Where entries live. ``None`` is never a stored value: it means "not there"."""

    async def aget(self, key: str) -> Any:
        """The value under ``key``, or ``None``."""
        ...

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        """Store ``value`` for ``ttl`` seconds (``None``: until evicted)."""
        ...

    async def adelete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        ...

    async def aclear(self) -> None:
        """Remove every entry of this cache."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class SyncCacheBackend(CacheBackend, Protocol):
    """A backend that can also answer without ``await`` (an in-process one)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, ttl: float | None) -> None: ...

    def delete(self, key: str) -> bool: ...

    def clear(self) -> None: ...



class _Stored(NamedTuple):
    value: Any
    ttl: float | None


def _expires(_key: str, stored: _Stored, now: float) -> float:
    return math.inf if stored.ttl is None else now + stored.ttl


class _Entries(TLRUCache[str, _Stored]):
    """cachetools' time-aware LRU, counting what it evicts and what expires."""

    def __init__(self, maxsize: int, clock: Clock) -> None:
        super().__init__(maxsize, ttu=_expires, timer=clock.now)
        self.evictions = 0
        self.expirations = 0

    def popitem(self) -> tuple[str, _Stored]:
        item = super().popitem()
        self.evictions += 1
        return item

    def expire(self, time: float | None = None) -> list[tuple[str, _Stored]]:
        expired = list(super().expire(time))
        self.expirations += len(expired)
        return expired


class MemoryBackend:
    """A bounded in-process cache with per-entry TTL (:class:`cachetools.TLRUCache`).

    At most ``max_entries`` entries; beyond that the least recently used go first, and expired
    ones are dropped before anything else. Values are stored as given (no copy, no
    serialisation), so a hit is a dictionary lookup. Thread-safe.
    """

    def __init__(self, max_entries: int = 10_000, *, clock: Clock = system_clock) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError("max_entries must be an int >= 1", variable="max_entries")
        self.max_entries = max_entries
        self.clock = clock
        self._data = _Entries(max_entries, clock)
        self._lock = threading.Lock()

    @property
    def evictions(self) -> int:
        """Entries dropped to make room."""
        return self._data.evictions

    @property
    def expirations(self) -> int:
        """Entries dropped because their time was up."""
        return self._data.expirations

    def __len__(self) -> int:
        with self._lock:
            self._data.expire()
            return len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def keys(self) -> list[str]:
        """Current keys."""
        with self._lock:
            return list(self._data)

    def get(self, key: str) -> Any:
        with self._lock:
            self._data.expire()  # cheap unless something is due: drops and counts expired ones
            stored = self._data.get(key)
        return None if stored is None else stored.value

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        if value is None:
            raise InvalidRequestError("None cannot be cached (it means 'not cached')")
        with self._lock:
            self._data[key] = _Stored(value, ttl)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    async def aget(self, key: str) -> Any:
        return self.get(key)

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        self.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def aclear(self) -> None:
        self.clear()

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryBackend(entries={len(self._data)}/{self.max_entries})"


_TAG = "__llm_async__"


def encode_value(value: Any) -> bytes:
    """JSON bytes of a cache value: a :class:`ChatResponse` (``raw``/``parsed`` dropped) or
    JSON-serialisable data."""
    if isinstance(value, ChatResponse):
        payload: Any = {_TAG: "chat_response",
                        "v": value.model_dump(mode="json", exclude={"raw", "parsed"})}
    else:
        payload = {_TAG: "json", "v": value}
    try:
        return _json.dumps(payload)
    except TypeError as exc:
        raise InvalidRequestError(
            f"a shared cache stores JSON data or ChatResponse, not {type(value).__name__}"
        ) from exc


def decode_value(data: bytes | str | None) -> Any:
    """The inverse of :func:`encode_value` (``None`` for anything unreadable)."""
    if data is None:
        return None
    try:
        payload = _json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict) or _TAG not in payload:
        return None
    if payload[_TAG] == "chat_response":
        return ChatResponse.model_validate(payload["v"])
    return payload.get("v")


class AiocacheBackend:
    """Any aiocache cache (``aiocache.Cache(...)``, ``RedisCache``, ``MemcachedCache``) as a
    backend. The cache's own serializer is used; :class:`RedisBackend` sets a JSON one."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    async def aget(self, key: str) -> Any:
        return await self.cache.get(key)

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        if value is None:
            raise InvalidRequestError("None cannot be cached (it means 'not cached')")
        await self.cache.set(key, value, ttl=ttl)

    async def adelete(self, key: str) -> bool:
        return bool(await self.cache.delete(key))

    async def aclear(self) -> None:
        await self.cache.clear()

    async def aclose(self) -> None:
        await self.cache.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.cache).__name__})"


def _json_serializer() -> Any:
    from aiocache.serializers import BaseSerializer

    class JsonValueSerializer(BaseSerializer):  # type: ignore[misc]
        """aiocache serializer for :func:`encode_value` bytes (no text decoding)."""

        DEFAULT_ENCODING = None

        def dumps(self, value: Any) -> bytes:
            return encode_value(value)

        def loads(self, value: Any) -> Any:
            return decode_value(value)

    return JsonValueSerializer()


class RedisBackend(AiocacheBackend):
    """A cache in Redis, shared by every process that uses the same ``url`` and ``namespace``.

    Redis keys are ``{namespace}:{key}``.

    Built on aiocache's ``RedisCache`` (redis-py's asyncio client); needs the ``redis`` extra.
    TTLs are Redis's own (``PSETEX``), so entries expire even if no process is running. Each
    operation is bounded by ``timeout`` seconds; a failing Redis makes the layer miss, never
    fail a call.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, namespace: str = "llm_async",
                 timeout: float = 2.0, pool_max_size: int | None = None) -> None:
        try:
            from aiocache import RedisCache
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "RedisBackend needs the 'redis' extra: "
                "pip install 'llm-async-client[redis]'") from exc
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigurationError(f"expected a redis:// URL, got {url!r}", variable="url")
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise ConfigurationError(f"bad database number in {url!r}", variable="url")
        self.url = url
        self.namespace = namespace
        super().__init__(RedisCache(
            serializer=_json_serializer(),
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db),
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
            namespace=namespace,
            timeout=timeout,
            pool_max_size=pool_max_size,
        ))

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        encode_value(value)  # a typed error for values Redis cannot hold, before sending
        await super().aset(key, value, None if ttl is None else float(ttl))

    async def aclose(self) -> None:
        client = self.cache.client
        closer = getattr(client, "aclose", None)  # redis-py >= 5; aiocache calls close()
        await (closer() if closer is not None else self.cache.close())

    def __repr__(self) -> str:
        host = urlsplit(self.url).hostname
        return f"RedisBackend(host={host!r}, namespace={self.namespace!r})"

