"""A cost ledger in Redis, shared by every worker process and machine that points at it.

::

    manager = CostManager(backend=RedisLedger("redis://localhost:6379/0"))

Reservations and commits are Lua scripts, so each one is atomic across all clients: a
reservation checks every budget it falls under and reserves on all of them or none, and two
workers can never both take the last dollar. Amounts are integer nano-dollars; the scripts
compare them as Lua numbers, which are exact up to 2⁵³ nano-dollars (about 9 million USD per
counter). A reservation left behind by a crashed worker expires after the manager's
``reservation_ttl``.

Every key starts with ``prefix`` (``{llm_async_cost}`` by default: the braces are a Redis
Cluster hash tag that keeps all keys of one ledger in one slot). Budgets themselves are not
stored: each worker configures them (usually from the same environment variables).
Requires ``redis`` (``pip install 'llm-async-client[redis]'``). The calls are blocking; the
manager runs them in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from ..application.cost_manager import (
    COUNTER_FIELDS,
    BudgetCheck,
    Counter,
    CounterKey,
    ReserveResult,
    UsageRecord,
)
from ..errors import ConfigurationError

__all__ = ["RedisLedger"]

# Key layout (P = prefix):
#   P:c:<period>:<window>:<dim>:<value>   hash of COUNTER_FIELDS
#   P:m:<dim>                             set of values seen for a dimension (all-time)
#   P:rs                                  hash budget -> amount reserved now
#   P:rz:<budget>                         zset reservation id -> expiry (epoch seconds)
#   P:ra:<budget>                         hash reservation id -> amount
#   P:res:<id>                            hash budget -> amount of one reservation
#   P:records                             list of record JSON, newest last

_PURGE = """
local function purge(p, name, now)
  local rz = p .. ':rz:' .. name
  local ra = p .. ':ra:' .. name
  local old = redis.call('ZRANGEBYSCORE', rz, '-inf', now)
  for _, rid in ipairs(old) do
    local a = redis.call('HGET', ra, rid)
    if a then redis.call('HINCRBY', p .. ':rs', name, '-' .. a) end
    redis.call('HDEL', ra, rid)
    redis.call('ZREM', rz, rid)
  end
end
local function drop(p, rid)
  local res = p .. ':res:' .. rid
  local items = redis.call('HGETALL', res)
  for i = 1, #items, 2 do
    local name, a = items[i], items[i + 1]
    if redis.call('HEXISTS', p .. ':ra:' .. name, rid) == 1 then
      redis.call('HINCRBY', p .. ':rs', name, '-' .. a)
      redis.call('HDEL', p .. ':ra:' .. name, rid)
      redis.call('ZREM', p .. ':rz:' .. name, rid)
    end
  end
  redis.call('DEL', res)
end
"""

# ARGV: prefix, rid, amount, now, expires, ttl, n, then n × (budget, limit, counter suffix)
_RESERVE = _PURGE + """
local p, rid, amount = ARGV[1], ARGV[2], ARGV[3]
local now, expires, ttl, n = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
for i = 1, n do purge(p, ARGV[7 + 3 * (i - 1) + 1], now) end
for i = 1, n do
  local base = 7 + 3 * (i - 1)
  local name, limit = ARGV[base + 1], tonumber(ARGV[base + 2])
  local spent = tonumber(redis.call('HGET', p .. ':c:' .. ARGV[base + 3], 'cost') or '0')
  local held = tonumber(redis.call('HGET', p .. ':rs', name) or '0')
  if spent + held + tonumber(amount) > limit then
    return {0, name, tostring(spent), tostring(held)}
  end
end
local res = p .. ':res:' .. rid
for i = 1, n do
  local name = ARGV[7 + 3 * (i - 1) + 1]
  redis.call('HINCRBY', p .. ':rs', name, amount)
  redis.call('ZADD', p .. ':rz:' .. name, expires, rid)
  redis.call('HSET', p .. ':ra:' .. name, rid, amount)
  redis.call('HSET', res, name, amount)
end
redis.call('EXPIRE', res, ttl)
return {1}
"""

# ARGV: prefix, rid
_RELEASE = _PURGE + """
drop(ARGV[1], ARGV[2])
return 1
"""

_FIELDS = len(COUNTER_FIELDS)
# ARGV: prefix, rid ('' for none), record json, max records, the increments (one per counter
# field), nc, then nc × (suffix, dim, value, is_total), nw, then nw × suffix
_COMMIT = _PURGE + f"""
local p, rid, data, maxrec = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local fields = {{{", ".join(repr(f).replace("'", '"') for f in COUNTER_FIELDS)}}}
if rid ~= '' then drop(p, rid) end
local at = 4 + {_FIELDS}
local nc = tonumber(ARGV[at + 1])
for i = 1, nc do
  local base = at + 1 + 4 * (i - 1)
  local key = p .. ':c:' .. ARGV[base + 1]
  for f = 1, {_FIELDS} do
    local inc = ARGV[4 + f]
    if inc ~= '0' then redis.call('HINCRBY', key, fields[f], inc) end
  end
  if ARGV[base + 4] == '1' then redis.call('SADD', p .. ':m:' .. ARGV[base + 2], ARGV[base + 3]) end
end
redis.call('RPUSH', p .. ':records', data)
if maxrec > 0 then redis.call('LTRIM', p .. ':records', -maxrec, -1) end
local wat = at + 1 + 4 * nc
local nw = tonumber(ARGV[wat + 1])
local out = {{}}
for i = 1, nw do
  out[i] = redis.call('HGET', p .. ':c:' .. ARGV[wat + 1 + i], 'cost') or '0'
end
return out
"""

# ARGV: prefix, now, then budget names
_RESERVED = _PURGE + """
local out = {}
for i = 3, #ARGV do
  purge(ARGV[1], ARGV[i], ARGV[2])
  out[i - 2] = redis.call('HGET', ARGV[1] .. ':rs', ARGV[i]) or '0'
end
return out
"""


def _suffix(key: CounterKey) -> str:
    period, window, dim, value = key
    return f"{period}:{window}:{dim}:{value}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLedger:
    """A :class:`~llm_async.application.cost_manager.Ledger` in Redis.

    ``url`` (``redis://host:port/db``) or an existing synchronous ``redis.Redis`` ``client``.
    ``max_records`` caps the records list (counters are never truncated).
    """

    blocking: ClassVar[bool] = True

    def __init__(self, url: str | None = None, *, client: Any = None,
                 prefix: str = "{llm_async_cost}", max_records: int = 100_000) -> None:
        if client is None:
            if url is None:
                raise ConfigurationError("RedisLedger needs a url or a client")
            try:
                import redis
            except ImportError as exc:  # pragma: no cover - redis is in the dev extras
                raise ConfigurationError(
                    "RedisLedger needs the redis package: pip install 'llm-async-client[redis]'"
                ) from exc
            client = redis.Redis.from_url(url)
        self.client = client
        self.prefix = prefix
        self.max_records = max_records
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)
        self._commit = client.register_script(_COMMIT)
        self._reserved = client.register_script(_RESERVED)
        self._lock = threading.Lock()

    def reserve(self, reservation_id: str, amount: int, checks: Sequence[BudgetCheck],
                expires_at: float, now: float) -> ReserveResult:
        ttl = max(1, int(expires_at - now) + 60)
        args: list[Any] = [self.prefix, reservation_id, amount, repr(now), repr(expires_at), ttl,
                           len(checks)]
        for check in checks:
            args.extend((check.name, check.limit, _suffix(check.key)))
        result = self._reserve(keys=[], args=args)
        if int(result[0]) == 1:
            return ReserveResult(True)
        return ReserveResult(False, _text(result[1]), int(float(_text(result[2]))),
                             int(float(_text(result[3]))))

    def release(self, reservation_id: str) -> None:
        self._release(keys=[], args=[self.prefix, reservation_id])

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        inc = Counter.of(record).as_tuple()
        args: list[Any] = [self.prefix, reservation_id or "", record.model_dump_json(),
                           self.max_records, *inc, len(counters)]
        for key in counters:
            args.extend((_suffix(key), key[2], key[3], "1" if key[0] == "total" else "0"))
        args.append(len(watch))
        args.extend(_suffix(key) for key in watch)
        result = self._commit(keys=[], args=args)
        return [int(_text(v)) for v in result]

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(f"{self.prefix}:c:{_suffix(key)}", *COUNTER_FIELDS)
        return [Counter(*(int(_text(v)) if v is not None else 0 for v in row))
                for row in pipe.execute()]

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
        if not budgets:
            return []
        result = self._reserved(keys=[], args=[self.prefix, repr(now), *budgets])
        return [int(_text(v)) for v in result]

    def dimension(self, dim: str) -> dict[str, Counter]:
        values = sorted(_text(v) for v in self.client.smembers(f"{self.prefix}:m:{dim}"))
        counters = self.read([("total", "all", dim, v) for v in values])
        return dict(zip(values, counters, strict=True))

    def recent(self, limit: int) -> list[UsageRecord]:
        rows = self.client.lrange(f"{self.prefix}:records", -limit, -1) if limit > 0 else []
        return [UsageRecord.model_validate_json(row) for row in rows]

    def clear(self) -> None:
        """Delete every key of this ledger's prefix."""
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            self.client.delete(*keys[start:start + 500])

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisLedger(prefix={self.prefix!r})"
