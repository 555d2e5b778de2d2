"""The Lua scripts behind ProviderGuard: each reads and writes one provider's keys in one atomic step.

Times are unix seconds passed as arguments; a stored time is never moved backwards.
"""

# Shared by the scripts: Lua's tostring() keeps 14 significant digits, too few for unix times in milliseconds;
# %.17g round-trips a double exactly. Scripts return numbers as such strings: Redis would truncate Lua numbers.
_LUA_NUM = "local function num(x) return string.format('%.17g', x) end\n"

# A token bucket in a hash (`tokens`, `at`), refilled at `rate` a second up to `burst`: one definition for the
# providers' submit rate and the API keys' request rate. `bucket_wait` reads it and says how long until a token is
# there (0: now); `take_token` takes it. A token due within a microsecond counts as there: unix times as doubles
# are precise to ~0.25 us, so a caller back at exactly the promised time may be short by rounding, and a tinier
# wait would not move its clock.
_TOKEN_BUCKET_LUA = """
local function bucket_wait(key, now, rate, burst)
  local tokens, at = burst, now
  local bucket = redis.call('HMGET', key, 'tokens', 'at')
  if bucket[1] then
    local last = tonumber(bucket[2])
    at = math.max(last, now)
    tokens = math.min(burst, tonumber(bucket[1]) + (at - last) * rate)
  end
  local wait = at - now + (1 - tokens) / rate
  if wait <= 1e-6 then wait = 0 end
  return tokens, at, wait
end
local function take_token(key, tokens, at)
  redis.call('HSET', key, 'tokens', num(math.max(0, tokens - 1)), 'at', num(at))
end
"""

# KEYS: credit pause hash, breaker hash, in-flight zset, bucket hash, interactive-waiting string
# ARGV: job id, now, in-flight ttl, rate/s, burst, max in flight, credit probe interval, probe lease, busy wait,
# "1" for an interactive job ("" for a batch job), seconds an interactive job's refusal holds batch jobs back
# Returns {allowed 0/1, wait seconds, reason, probe 0/1}. Checks first, writes last: a refusal changes nothing but
# this: an interactive job refused for the in-flight cap or the rate marks itself waiting, and until it is admitted
# (or the mark expires) batch jobs are refused, so the next slot and token are its own even when the batch could
# take every one (a burst of 1 keeps none back).
ADMIT = (
    _LUA_NUM
    + _TOKEN_BUCKET_LUA
    + """
local job, now = ARGV[1], tonumber(ARGV[2])
local rate, burst, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local busy = tonumber(ARGV[9])

-- 1. credit pause: one probe per interval, counted from the last refusal or probe, whichever is later
local pause = redis.call('HMGET', KEYS[1], 'refused_at', 'last_probe_at')
local credit_probe = pause[1] ~= false
if credit_probe then
  local next_probe = math.max(tonumber(pause[1]), tonumber(pause[2] or 0)) + tonumber(ARGV[7])
  if now < next_probe then return {0, num(next_probe - now), 'held: insufficient credits', 0} end
end

-- 2. circuit breaker: open until open_until, then half-open (one probe at a time) until a success closes it
local breaker = redis.call('HMGET', KEYS[2], 'open_until', 'probe_job', 'probe_until')
local open_until = tonumber(breaker[1] or 0)
local breaker_probe = open_until > 0
if breaker_probe then
  if now < open_until then return {0, num(open_until - now), 'circuit open', 0} end
  local probe_until = tonumber(breaker[3] or 0)
  if breaker[2] ~= job and now < probe_until then
    return {0, num(math.min(busy, probe_until - now)), 'circuit half-open: probe in progress', 0}
  end
end

-- 3. in-flight cap; a score is an expiry, so entries of jobs that died without releasing drop out
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
local already = redis.call('ZSCORE', KEYS[3], job) ~= false
local interactive = ARGV[10] == '1'
local function waits(seconds, reason)
  if interactive then redis.call('SET', KEYS[5], job, 'PX', math.ceil(tonumber(ARGV[11]) * 1000)) end
  return {0, num(seconds), reason, 0}
end
if not already and not interactive and redis.call('EXISTS', KEYS[5]) == 1 then
  return {0, num(busy), 'an interactive job goes first', 0}
end
if not already and redis.call('ZCARD', KEYS[3]) >= cap then
  return waits(busy, 'in-flight cap ' .. ARGV[6] .. ' reached')
end

-- 4. token bucket; a job already in flight was counted when it was first admitted
local tokens, at = burst, now
if not already then
  local wait
  tokens, at, wait = bucket_wait(KEYS[4], now, rate, burst)
  if wait > 0 then return waits(wait, 'rate limit') end
end
if interactive and redis.call('GET', KEYS[5]) == job then redis.call('DEL', KEYS[5]) end

-- every check passed: take what each one grants
if not already then take_token(KEYS[4], tokens, at) end
redis.call('ZADD', KEYS[3], num(now + tonumber(ARGV[3])), job)
if breaker_probe then redis.call('HSET', KEYS[2], 'probe_job', job, 'probe_until', num(now + tonumber(ARGV[8]))) end
if credit_probe then
  redis.call('HSET', KEYS[1], 'last_probe_at', ARGV[2], 'probe_job', job)
  return {1, '0', 'probe: insufficient credits', 1}
end
if breaker_probe then return {1, '0', 'probe: circuit half-open', 1} end
return {1, '0', already and 'already in flight' or 'admitted', 0}
"""
)

# KEYS: in-flight zset, breaker hash. ARGV: job id. A probe that ends without an answer frees the probe slot.
FREE_SLOT = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], 'probe_job') == ARGV[1] then redis.call('HDEL', KEYS[2], 'probe_job', 'probe_until') end
"""

# KEYS: breaker hash, credit pause hash. ARGV: job id. Only the latest credit probe's success lifts the pause: a
# submit admitted before the pause may still be accepted (a cheaper job) while the balance stays short.
SUCCESS = """
redis.call('DEL', KEYS[1])
if redis.call('HGET', KEYS[2], 'probe_job') == ARGV[1] then redis.call('DEL', KEYS[2]) end
"""

# KEYS: breaker hash. ARGV: now, threshold, cooldown.
FAILURE = (
    _LUA_NUM
    + """
local now = tonumber(ARGV[1])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or 0)
-- while open, failures of submits sent before it opened do not extend the cooldown
if (open_until == 0 and failures >= tonumber(ARGV[2])) or (open_until > 0 and now >= open_until) then
  redis.call('HSET', KEYS[1], 'open_until', num(now + tonumber(ARGV[3])))
  redis.call('HDEL', KEYS[1], 'probe_job', 'probe_until')
end
"""
)

# KEYS: credit pause hash. ARGV: now, message. `since` is the first refusal; `refused_at` the latest.
PAUSE = """
redis.call('HSETNX', KEYS[1], 'since', ARGV[1])
local last = redis.call('HGET', KEYS[1], 'refused_at')
if not last or tonumber(last) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'refused_at', ARGV[1]) end
redis.call('HSET', KEYS[1], 'message', ARGV[2])
"""

# KEYS: bucket hash. ARGV: now, rate/s, burst, ttl seconds. Returns the wait in seconds ('0': a token was taken).
TAKE_TOKEN = (
    _LUA_NUM
    + _TOKEN_BUCKET_LUA
    + """
local tokens, at, wait = bucket_wait(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
if wait > 0 then return num(wait) end
take_token(KEYS[1], tokens, at)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return '0'
"""
)
