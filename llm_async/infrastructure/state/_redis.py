"""What the Redis backends share: the connection, reply decoding and the script clock.

``redis`` is an optional dependency (``pip install 'llm-async-client[redis]'``); it is imported
only when a backend is created from a ``url``.
"""

from __future__ import annotations

from typing import Any

from ..._clock import Clock
from ...errors import ConfigurationError

__all__ = ["LUA_CLOCK", "connect", "now_arg", "text"]

#: ``clock(arg)``: the injected time passed as an argument, else Redis's own ``TIME``.
LUA_CLOCK = """
local function clock(arg)
  local now = tonumber(arg)
  if now == nil or now < 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return now
end
"""


def connect(redis: Any, url: str | None) -> tuple[Any, bool]:
    """``(client, owned)``: the given ``redis.asyncio`` client, or one made from ``url`` (owned:
    the backend closes it)."""
    if redis is not None:
        return redis, False
    if url is None:
        raise ConfigurationError("pass a redis.asyncio client (redis=) or a url=")
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "the Redis backend needs the 'redis' package: pip install 'llm-async-client[redis]'"
        ) from exc
    return aioredis.from_url(url), True


def text(value: Any) -> str:
    """A reply value as text (clients with or without ``decode_responses``)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def now_arg(clock: Clock | None) -> str:
    """The time argument of a script: the injected clock's, or ``-1`` for Redis ``TIME``."""
    return "-1" if clock is None else repr(clock.now())
