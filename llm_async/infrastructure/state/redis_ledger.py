"""A cost ledger in Redis, shared by every worker process and machine that points at it.

::

    manager = CostManager(backend=RedisLedger("redis://localhost:6379/0"))

Reservations, renewals, settlements and commits are Lua scripts, so each one is atomic across
all clients: a reservation checks every budget it falls under and reserves on all of them or
none, and two workers can never both take the last dollar. Amounts are integer nano-dollars;
the scripts compare them as Lua numbers, which are exact up to 2⁵³ nano-dollars (about
9 million USD per counter). Each reservation carries a lease (a score in one sorted set); a
lease that runs out (its worker was killed) is charged at the reserved amount, as a record
marked ``lease_expired``, by the next script that looks at reservations.

Every key starts with ``prefix`` (``{llm_async_cost}`` by default: the braces are a Redis
Cluster hash tag that keeps all keys of one ledger in one slot). Budgets themselves are not
stored: each worker configures them (usually from the same environment variables).
Requires ``redis`` (``pip install 'llm-async-client[redis]'``). The calls are blocking; the
manager runs them in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ...application.cost_manager.ledger import default_charge
from ...application.cost_manager.records import (
    COUNTER_FIELDS,
    Counter,
    CounterKey,
    Hold,
    ReserveResult,
    UsageRecord,
)
from ...errors import ConfigurationError

__all__ = ["RedisLedger"]

# Key layout (P = prefix):
#   P:c:<period>:<window>:<dim>:<value>   hash of COUNTER_FIELDS
#   P:m:<dim>                             set of values seen for a dimension (all-time)
#   P:rs                                  hash budget -> amount reserved now
#   P:rz                                  zset reservation id -> lease expiry (epoch seconds)
#   P:res:<id>                            hash of one reservation: b:<budget> -> amount, and
#                                         _rec / _keys / _inc: what its expiry is charged as
#   P:tomb:<id>                           hash _inc / _keys of a charged expiry (one day)
#   P:records                             list of record JSON, newest last
# Counter keys travel as lines (\x1e) of fields (\x1f): suffix, dim, value, is_total.

_LIB = f"""
local FIELDS = {{{", ".join('"' + f + '"' for f in COUNTER_FIELDS)}}}
local function split(s, sep)
  local out, start = {{}}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then out[#out + 1] = string.sub(s, start); return out end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end
local function apply(p, inc, keys, sign)
  local incs = split(inc, ',')
  for _, line in ipairs(split(keys, '\\30')) do
    if line ~= '' then
      local parts = split(line, '\\31')
      local key = p .. ':c:' .. parts[1]
      for f = 1, #FIELDS do
        local v = tonumber(incs[f]) * sign
        if v ~= 0 then redis.call('HINCRBY', key, FIELDS[f], v) end
      end
      if parts[4] == '1' then redis.call('SADD', p .. ':m:' .. parts[2], parts[3]) end
    end
  end
end
local function unhold(p, res)
  local items = redis.call('HGETALL', res)
  local out = {{}}
  for i = 1, #items, 2 do
    local f, v = items[i], items[i + 1]
    if string.sub(f, 1, 2) == 'b:' then
      redis.call('HINCRBY', p .. ':rs', string.sub(f, 3), -tonumber(v))
    else
      out[f] = v
    end
  end
  return out
end
local function charge(p, rid)
  local res = p .. ':res:' .. rid
  local data = unhold(p, res)
  if data['_inc'] then
    apply(p, data['_inc'], data['_keys'], 1)
    redis.call('RPUSH', p .. ':records', data['_rec'])
    local tomb = p .. ':tomb:' .. rid
    redis.call('HSET', tomb, '_inc', data['_inc'], '_keys', data['_keys'])
    redis.call('EXPIRE', tomb, 86400)
  end
  redis.call('DEL', res)
  redis.call('ZREM', p .. ':rz', rid)
end
local function purge(p, now)
  local old = redis.call('ZRANGEBYSCORE', p .. ':rz', '-inf', now)
  for _, rid in ipairs(old) do charge(p, rid) end
end
local function settle(p, rid)
  local res = p .. ':res:' .. rid
  if redis.call('EXISTS', res) == 1 then
    unhold(p, res)
    redis.call('DEL', res)
    redis.call('ZREM', p .. ':rz', rid)
    return
  end
  local tomb = p .. ':tomb:' .. rid
  local t = redis.call('HMGET', tomb, '_inc', '_keys')
  if t[1] then
    apply(p, t[1], t[2], -1)
    redis.call('DEL', tomb)
  end
end
"""

# ARGV: prefix, rid, amount, now, expires, rec, keys, inc, n, then n × (budget, limit, suffix)
_RESERVE = _LIB + """
local p, rid, amount, now, expires = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local n = tonumber(ARGV[9])
purge(p, now)
for i = 1, n do
  local base = 9 + 3 * (i - 1)
  local name, limit = ARGV[base + 1], tonumber(ARGV[base + 2])
  local spent = tonumber(redis.call('HGET', p .. ':c:' .. ARGV[base + 3], 'cost') or '0')
  local held = tonumber(redis.call('HGET', p .. ':rs', name) or '0')
  if spent + held + amount > limit then
    return {0, name, tostring(spent), tostring(held)}
  end
end
local res = p .. ':res:' .. rid
for i = 1, n do
  local name = ARGV[9 + 3 * (i - 1) + 1]
  redis.call('HINCRBY', p .. ':rs', name, amount)
  redis.call('HSET', res, 'b:' .. name, amount)
end
redis.call('HSET', res, '_rec', ARGV[6], '_keys', ARGV[7], '_inc', ARGV[8])
redis.call('ZADD', p .. ':rz', expires, rid)
return {1}
"""

# ARGV: prefix, now, expires, ids...
_RENEW = _LIB + """
local p, now, expires = ARGV[1], ARGV[2], ARGV[3]
purge(p, now)
local gone = {}
for i = 4, #ARGV do
  if redis.call('ZSCORE', p .. ':rz', ARGV[i]) then
    redis.call('ZADD', p .. ':rz', 'XX', expires, ARGV[i])
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
"""

# ARGV: prefix, rid
_RELEASE = _LIB + """
settle(ARGV[1], ARGV[2])
return 1
"""

# ARGV: prefix, rid ('' for none), record json, max records, inc, keys, then watch suffixes
_COMMIT = _LIB + """
local p, rid, data, maxrec = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if rid ~= '' then settle(p, rid) end
apply(p, ARGV[5], ARGV[6], 1)
redis.call('RPUSH', p .. ':records', data)
if maxrec > 0 then redis.call('LTRIM', p .. ':records', -maxrec, -1) end
local out = {}
for i = 7, #ARGV do
  out[#out + 1] = redis.call('HGET', p .. ':c:' .. ARGV[i], 'cost') or '0'
end
return out
"""

# ARGV: prefix, now, then budget names
_RESERVED = _LIB + """
purge(ARGV[1], ARGV[2])
local out = {}
for i = 3, #ARGV do
  out[i - 2] = redis.call('HGET', ARGV[1] .. ':rs', ARGV[i]) or '0'
end
return out
"""


def _suffix(key: CounterKey) -> str:
    period, window, dim, value = key
    return f"{period}:{window}:{dim}:{value}"


def _keys(keys: Sequence[CounterKey]) -> str:
    return "\x1e".join(
        f"{_suffix(k)}\x1f{k[2]}\x1f{k[3]}\x1f{'1' if k[0] == 'total' else '0'}" for k in keys)


def _inc(record: UsageRecord) -> str:
    return ",".join(str(v) for v in Counter.of(record).as_tuple())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLedger:
    """A :class:`~llm_async.application.cost_manager.Ledger` in Redis.

    ``url`` (``redis://host:port/db``) or an existing synchronous ``redis.Redis`` ``client``.
    ``max_records`` caps the records list (counters are never truncated).
    """

    blocking: bool = True

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
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._commit = client.register_script(_COMMIT)
        self._reserved = client.register_script(_RESERVED)
        self._lock = threading.Lock()

    def reserve(self, hold: Hold, now: float) -> ReserveResult:
        record, keys = default_charge(hold)
        args: list[Any] = [self.prefix, hold.id, hold.amount, repr(now), repr(hold.expires_at),
                           record.model_dump_json(), _keys(keys), _inc(record),
                           len(hold.checks)]
        for check in hold.checks:
            args.extend((check.name, check.limit, _suffix(check.key)))
        result = self._reserve(keys=[], args=args)
        if int(result[0]) == 1:
            return ReserveResult(True)
        return ReserveResult(False, _text(result[1]), int(float(_text(result[2]))),
                             int(float(_text(result[3]))))

    def renew(self, ids: Sequence[str], expires_at: float, now: float) -> list[str]:
        if not ids:
            return []
        gone = self._renew(keys=[], args=[self.prefix, repr(now), repr(expires_at), *ids])
        return [_text(v) for v in gone]

    def release(self, reservation_id: str) -> None:
        self._release(keys=[], args=[self.prefix, reservation_id])

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        args: list[Any] = [self.prefix, reservation_id or "", record.model_dump_json(),
                           self.max_records, _inc(record), _keys(counters),
                           *(_suffix(key) for key in watch)]
        result = self._commit(keys=[], args=args)
        return [int(_text(v)) for v in result]

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(f"{self.prefix}:c:{_suffix(key)}", *COUNTER_FIELDS)
        return [Counter(*(int(_text(v)) if v is not None else 0 for v in row))
                for row in pipe.execute()]

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
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
