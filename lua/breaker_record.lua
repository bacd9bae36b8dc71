-- breaker_record: record call outcomes; may trip, re-open or close the breaker.
--
-- Outcomes are fenced by generation: they change state only when recorded against the
-- generation they were admitted under, so a success from before a re-open can never
-- close the breaker again. Stale outcomes still count in the lifetime totals.
-- Successes may arrive batched; they are applied before the failure of the same call,
-- which keeps one replica's own order intact for the consecutive-failure count.
--
-- KEYS[1] - breaker state hash
-- KEYS[2] - half-open probe leases, zset token -> lease expiry ms
-- KEYS[3] - rate-mode window, hash "s:<bucket_ms>"/"f:<bucket_ms>" -> count
-- KEYS[4] - optional: the service's retry budget hash ('q:<sec>'/'r:<sec>' -> count, see
--           lib/budget_sum.lua), same {service} tag; absent when the budget is off
-- ARGV[1] - channel: pub/sub channel for transition events
-- ARGV[2] - name: the breaker's name, echoed in events
-- ARGV[3] - gen: generation the outcomes were admitted under
-- ARGV[4] - successes: number of successes to record (>= 0)
-- ARGV[5] - failures: number of failures to record after them (>= 0)
-- ARGV[6] - token: probe lease token for a half-open probe outcome, '' otherwise
-- ARGV[7] - failure_threshold: consecutive failures that open the breaker (>= 1)
-- ARGV[8] - success_threshold: probe successes that close it (>= 1)
-- ARGV[9] - open_ms: how long the breaker stays OPEN (>= 1)
-- ARGV[10] - rate_permille: failure rate (per mille) that opens it; 0 = consecutive mode
-- ARGV[11] - minimum_calls: calls in the window before the rate is judged (>= 1)
-- ARGV[12] - window_ms: sliding window length for rate mode (>= 10)
-- ARGV[13] - key_ttl_ms: expiry refreshed on every key written (>= 1)
-- ARGV[14] - now_ms: explicit server time for tests; 0 means read TIME
-- ARGV[15] - budget_requests: with KEYS[4], requests to add to this second's budget
--            bucket (>= 0), counted whatever the breaker's state or the outcomes' generation
-- ARGV[16] - budget_window_s: with KEYS[4], the budget's window in whole seconds (1..3600)
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: array {result, state, gen, failures, successes, opened_at_ms, open_until_ms,
--               now_ms, failures_at_trip, window_calls, window_failures}
--   failures_at_trip: the failure count that tripped the breaker (consecutive failures,
--   the window's failures in rate mode, the failed probes from HALF_OPEN), kept in the
--   hash as 'fat' while OPEN/HALF_OPEN and 0 in every other state.
--   result: 0 applied, 1 stale (ignored for state), 2 applied and the state changed;
--   16 is added when the stored value was corrupt (another type, an unknown state): it
--   read as absent and was written afresh.
-- With KEYS[4] the budget hash gets its requests and expires budget_window_s + 1 s after
-- this write (a key of another type there is dropped first); the reply is the same.
-- Publishes on ARGV[1] at each transition, and when a half-open probe slot frees:
-- 'gen|state|opened_at_ms|open_until_ms|now_ms|name'.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/publish_transition.lua"
-- @include "lib/override_expired.lua"
-- @include "lib/breaker_fields.lua"
-- @include "lib/budget_add_requests.lua"
-- @include "lib/drop_wrong_types.lua"
-- @include "lib/is_int.lua"

local state_key = KEYS[1]
local probes_key = KEYS[2]
local window_key = KEYS[3]
local channel = ARGV[1]
local name = ARGV[2]
local call_gen = tonumber(ARGV[3])
local n_succ = tonumber(ARGV[4])
local n_fail = tonumber(ARGV[5])
local token = ARGV[6]
local failure_threshold = tonumber(ARGV[7])
local success_threshold = tonumber(ARGV[8])
local open_ms = tonumber(ARGV[9])
local rate_permille = tonumber(ARGV[10])
local minimum_calls = tonumber(ARGV[11])
local window_ms = tonumber(ARGV[12])
local key_ttl_ms = tonumber(ARGV[13])
local now_ms = tonumber(ARGV[14])
if not call_gen or not n_succ or n_succ < 0 or not n_fail or n_fail < 0
    or not failure_threshold or failure_threshold < 1
    or not success_threshold or success_threshold < 1 or not open_ms or open_ms < 1
    or not rate_permille or rate_permille < 0 or rate_permille > 1000
    or not minimum_calls or minimum_calls < 1 or not window_ms or window_ms < 10
    or not key_ttl_ms or key_ttl_ms < 1 or not now_ms then
  return redis.error_reply('MSFW_BADARG breaker_record: invalid argument')
end
local budget_key = KEYS[4]
local budget_requests, budget_window_s = 0, 0
if budget_key ~= nil and budget_key ~= '' then
  budget_requests = tonumber(ARGV[15])
  budget_window_s = tonumber(ARGV[16])
  if publish_argc < 16 or not is_int(budget_requests, 0) or not is_int(budget_window_s, 1)
      or budget_window_s > 3600 then
    return redis.error_reply('MSFW_BADARG breaker_record: invalid budget argument')
  end
end
now_ms = now_or_server_ms(now_ms)

local h, corrupt = breaker_fields(state_key, true, 'gen', 'fail', 'succ', 'opened_at',
  'open_until', 'tf', 'ts', 'trips', 'fat')
local st = h[1] or 'closed'
local gen = tonumber(h[2]) or 0
local fail = tonumber(h[3]) or 0
local succ = tonumber(h[4]) or 0
local opened_at = tonumber(h[5]) or 0
local open_until = tonumber(h[6]) or 0
-- Lifetime totals count every outcome, stale ones included (no lost updates to check).
local total_failures = (tonumber(h[7]) or 0) + n_fail
local total_successes = (tonumber(h[8]) or 0) + n_succ
local trips = tonumber(h[9]) or 0
local fat = tonumber(h[10]) or 0
local result = 0
local w_calls, w_fails = 0, 0

local function transition(to, tripped_by)
  gen = gen + 1
  st = to
  fail = 0
  succ = 0
  result = 2
  if to == 'open' then
    opened_at = now_ms
    open_until = now_ms + open_ms
    trips = trips + 1
    fat = tripped_by
  elseif to == 'closed' then
    open_until = 0
    fat = 0
  end
  redis.call('DEL', probes_key, window_key)
  publish_transition(channel, name, gen, st, opened_at, open_until, now_ms)
end

-- A manual override whose TTL has passed returns to CLOSED with a new generation; the
-- outcomes in hand were then admitted under the override and are stale.
if override_expired(st, open_until, now_ms) then
  transition('closed')
end

if call_gen ~= gen or st == 'open' or st == 'forced_open' then
  if result == 0 then result = 1 end
  if token ~= '' then redis.call('ZREM', probes_key, token) end
elseif st == 'forced_closed' or st == 'disabled' then
  result = 0
elseif st == 'half_open' then
  -- Only a live probe lease counts: an expired lease was given to another probe.
  if token == '' or not redis.call('ZSCORE', probes_key, token) then
    result = 1
  else
    redis.call('ZREM', probes_key, token)
    if n_fail > 0 then
      transition('open', n_fail)
    else
      succ = succ + n_succ
      if succ >= success_threshold then
        transition('closed')
      else
        -- A probe slot is free again: replicas rejecting locally may try again.
        publish_transition(channel, name, gen, st, opened_at, open_until, now_ms)
      end
    end
  end
elseif rate_permille > 0 then
  -- CLOSED, rate mode: add to the current bucket, sum the window, judge the rate.
  local bucket_ms = math.max(1, math.floor(window_ms / 10))
  local bucket = now_ms - (now_ms % bucket_ms)
  if n_succ > 0 then redis.call('HINCRBY', window_key, 's:' .. bucket, n_succ) end
  if n_fail > 0 then redis.call('HINCRBY', window_key, 'f:' .. bucket, n_fail) end
  redis.call('PEXPIRE', window_key, window_ms + bucket_ms)
  local fields = redis.call('HGETALL', window_key)
  local oldest = now_ms - window_ms
  for i = 1, #fields, 2 do
    local kind, at = string.match(fields[i], '^(%a):(%d+)$')
    local count = tonumber(fields[i + 1]) or 0
    if at == nil or tonumber(at) + bucket_ms <= oldest then
      redis.call('HDEL', window_key, fields[i])
    else
      w_calls = w_calls + count
      if kind == 'f' then w_fails = w_fails + count end
    end
  end
  if n_fail > 0 then fail = fail + n_fail elseif n_succ > 0 then fail = 0 end
  if w_calls >= minimum_calls and w_fails * 1000 >= rate_permille * w_calls then
    transition('open', w_fails)
  end
else
  -- CLOSED, consecutive mode.
  if n_succ > 0 then fail = 0 end
  fail = fail + n_fail
  if fail >= failure_threshold then
    transition('open', fail)
  end
end

redis.call('HSET', state_key, 'st', st, 'gen', gen, 'fail', fail, 'succ', succ,
  'opened_at', opened_at, 'open_until', open_until, 'tf', total_failures,
  'ts', total_successes, 'trips', trips, 'fat', fat)
redis.call('PEXPIRE', state_key, key_ttl_ms)
-- Every request reported counts in the retry budget, stale outcomes included: the
-- service saw them all. One script, so counting them costs no round trip of its own.
if budget_requests > 0 then
  drop_wrong_types({budget_key}, {'hash'})
  budget_add_requests(budget_key, math.floor(now_ms / 1000), budget_requests, budget_window_s)
end
return {result + (corrupt and 16 or 0), breaker_codes[st], gen, fail, succ, opened_at, open_until, now_ms, fat,
  w_calls, w_fails}
