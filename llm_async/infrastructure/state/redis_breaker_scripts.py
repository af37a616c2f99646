"""The Lua scripts of the Redis circuit breaker (see
:mod:`llm_async.infrastructure.state.redis_breaker`): each state change is one atomic script.

Keys: the state hash, the window hash (``<epoch>:t|f|s`` counters and ``c:<call id>`` -> epoch of
a logical call's latest failure) and the probe-lease sorted set (member: lease token, score:
expiry time). Every script refreshes the state key's expiry.
"""

from __future__ import annotations

from ._redis import LUA_CLOCK

__all__ = ["ACQUIRE", "FORCE", "RECORD"]

# KEYS: state hash, window hash, probe-lease sorted set.
# ARGV: now, half_open_max_calls, probe lease (s), key ttl (ms), lease token.
# Returns {allowed, old state, new state, generation, retry_after, probe, seq, last_error}.
ACQUIRE = LUA_CLOCK + """
local k, w, p = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[4])
local st = redis.call('HGET', k, 'state') or 'closed'
local old = st
local seq = redis.call('HINCRBY', k, 'total', 1)
local forced = redis.call('HGET', k, 'forced') == '1'
local untl = tonumber(redis.call('HGET', k, 'opened_until') or '0')
if st == 'open' and not forced and now >= untl then
  st = 'half_open'
  redis.call('HSET', k, 'state', st, 'ho_success', 0, 'consec', 0, 'mark', seq)
  redis.call('HINCRBY', k, 'gen', 1)
  redis.call('DEL', w, p)
end
redis.call('PEXPIRE', k, ttl)
local gen = tonumber(redis.call('HGET', k, 'gen') or '0')
local last = redis.call('HGET', k, 'last_error') or ''
if st == 'open' then
  redis.call('HINCRBY', k, 'rejected', 1)
  local ra = '-1'
  if not forced then ra = tostring(untl - now) end
  return {0, old, st, gen, ra, 0, seq, last}
end
if st == 'half_open' then
  redis.call('ZREMRANGEBYSCORE', p, '-inf', now)
  if redis.call('ZCARD', p) >= tonumber(ARGV[2]) then
    redis.call('HINCRBY', k, 'rejected', 1)
    return {0, old, st, gen, '-1', 0, seq, last}
  end
  redis.call('ZADD', p, now + tonumber(ARGV[3]), ARGV[5])
  redis.call('PEXPIRE', p, ttl)
  return {1, old, st, gen, '-1', 1, seq, last}
end
return {1, old, st, gen, '-1', 0, seq, last}
"""

# KEYS: state hash, window hash, probe-lease sorted set.
# ARGV: see RedisCircuitBreaker._send. Returns {old state, new state}.
RECORD = LUA_CLOCK + """
local k, w, p = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local outcome = ARGV[2]
local slow = ARGV[3] == '1'
local probe = ARGV[4] == '1'
local pgen = tonumber(ARGV[5])
local ft = tonumber(ARGV[6])
local succ_t = tonumber(ARGV[7])
local rate_t = tonumber(ARGV[8])
local min_calls = tonumber(ARGV[9])
local slow_t = tonumber(ARGV[10])
local window = tonumber(ARGV[11])
local buckets = tonumber(ARGV[12])
local base = tonumber(ARGV[13])
local mult = tonumber(ARGV[14])
local maxd = tonumber(ARGV[15])
local jit = tonumber(ARGV[16])
local ra = tonumber(ARGV[17])
local seq = tonumber(ARGV[18])
local call = ARGV[19]
local token = ARGV[20]
local ttl = tonumber(ARGV[21])
local desc = ARGV[22]
local st = redis.call('HGET', k, 'state') or 'closed'
local old = st
local gen = tonumber(redis.call('HGET', k, 'gen') or '0')
local current = (pgen == gen)
if probe then redis.call('ZREM', p, token) end
redis.call('PEXPIRE', k, ttl)
if outcome == 'r' then return {old, st} end
if outcome == 'i' then
  redis.call('HINCRBY', k, 'ignored', 1)
  return {old, st}
end
local failed = outcome == 'f'
if failed then
  redis.call('HINCRBY', k, 'failed', 1)
  slow = false
else
  redis.call('HINCRBY', k, 'successful', 1)
  if slow then redis.call('HINCRBY', k, 'slow', 1) end
end
local width = window / buckets
local epoch = math.floor(now / width)
if call ~= '' then
  local prev = redis.call('HGET', w, 'c:' .. call)
  if prev then
    redis.call('HDEL', w, 'c:' .. call)
    local pe = tonumber(prev)
    if pe > epoch - buckets and tonumber(redis.call('HGET', w, pe .. ':f') or '0') > 0 then
      redis.call('HINCRBY', w, pe .. ':t', -1)
      redis.call('HINCRBY', w, pe .. ':f', -1)
    end
  end
end
redis.call('HINCRBY', w, epoch .. ':t', 1)
if failed then redis.call('HINCRBY', w, epoch .. ':f', 1) end
if slow then redis.call('HINCRBY', w, epoch .. ':s', 1) end
if failed and call ~= '' then redis.call('HSET', w, 'c:' .. call, epoch) end
for _, field in ipairs(redis.call('HKEYS', w)) do
  local e = tonumber(string.match(field, '^(-?%d+):'))
  if e == nil and string.sub(field, 1, 2) == 'c:' then
    e = tonumber(redis.call('HGET', w, field))
  end
  if e ~= nil and e <= epoch - buckets then redis.call('HDEL', w, field) end
end
redis.call('PEXPIRE', w, math.floor(window * 2000))
local function trip()
  local trips = redis.call('HINCRBY', k, 'trips', 1)
  local d = base * (mult ^ (trips - 1))
  if d > maxd then d = maxd end
  d = d * jit
  if ra > d then d = math.min(ra, maxd) end
  redis.call('HSET', k, 'state', 'open', 'opened_until', tostring(now + d), 'consec', 0,
             'ho_success', 0, 'mark', redis.call('HGET', k, 'total'), 'last_error', desc)
  redis.call('HINCRBY', k, 'gen', 1)
  redis.call('HINCRBY', k, 'opened', 1)
  redis.call('DEL', w, p)
  st = 'open'
end
if probe and current and st == 'half_open' then
  if failed or slow then
    trip()
  else
    local s = redis.call('HINCRBY', k, 'ho_success', 1)
    if s >= succ_t then
      redis.call('HSET', k, 'state', 'closed', 'trips', 0, 'consec', 0, 'ho_success', 0,
                 'opened_until', 0, 'mark', redis.call('HGET', k, 'total'), 'last_error', '')
      redis.call('HINCRBY', k, 'gen', 1)
      redis.call('DEL', w, p)
      st = 'closed'
    end
  end
elseif st == 'closed' then
  local c = 0
  if failed then
    c = tonumber(redis.call('HGET', k, 'consec') or '0')
    if seq > tonumber(redis.call('HGET', k, 'mark') or '0') then
      c = redis.call('HINCRBY', k, 'consec', 1)
    end
  else
    redis.call('HSET', k, 'consec', 0, 'mark', redis.call('HGET', k, 'total'))
  end
  local trip_now = c >= ft
  if not trip_now then
    local total, nf, ns = 0, 0, 0
    for e = epoch - buckets + 1, epoch do
      local v = redis.call('HMGET', w, e .. ':t', e .. ':f', e .. ':s')
      total = total + (tonumber(v[1]) or 0)
      nf = nf + (tonumber(v[2]) or 0)
      ns = ns + (tonumber(v[3]) or 0)
    end
    if total >= min_calls then
      if rate_t >= 0 and nf / total >= rate_t then trip_now = true end
      if slow_t >= 0 and ns / total >= slow_t then trip_now = true end
    end
  end
  if trip_now then trip() end
end
return {old, st}
"""

# KEYS: state hash, window hash, probe-lease sorted set. ARGV: 'open' | 'reset', ttl (ms).
FORCE = """
local k = KEYS[1]
local old = redis.call('HGET', k, 'state') or 'closed'
local total = redis.call('HGET', k, 'total') or 0
if ARGV[1] == 'open' then
  redis.call('HSET', k, 'state', 'open', 'forced', 1, 'opened_until', '1e300', 'consec', 0,
             'ho_success', 0, 'mark', total)
else
  redis.call('HSET', k, 'state', 'closed', 'forced', 0, 'opened_until', 0, 'consec', 0,
             'ho_success', 0, 'trips', 0, 'mark', total, 'last_error', '')
end
redis.call('HINCRBY', k, 'gen', 1)
redis.call('PEXPIRE', k, tonumber(ARGV[2]))
redis.call('DEL', KEYS[2], KEYS[3])
return {old, redis.call('HGET', k, 'state')}
"""
