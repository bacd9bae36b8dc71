-- cache_stats_add: add one process's cache results to a service's per-minute counts.
--
-- KEYS[1] - the service's cache stats hash, a ring of 60 one-minute slots:
--           'm<slot>' holds the minute (server ms // 60000) that slot <slot>
--           (minute mod 60) counts, '<slot>:<result>' that minute's count of <result>
-- ARGV[1] - now_ms: 0 = the server's TIME (tests pass a fixed time)
-- ARGV[2] - ttl_ms: the hash's expiry from now (it outlives the ring's hour)
-- ARGV[3..7] - the deltas of hit, miss, stale, coalesced and bypass (integers >= 0)
-- Reply: integer, the minute the deltas were added to
--
-- A slot found holding an older minute is reset before it counts the new one, so the
-- hash never holds more than 60 minutes (360 fields) and needs no scan to prune. A
-- foreign type or a non-integer count is replaced, never an error to the flusher.

-- @include "lib/arg_error.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/now_or_server_ms.lua"
-- @include "lib/drop_wrong_types.lua"

local stats_key = KEYS[1]
local now_ms = tonumber(ARGV[1])
local ttl_ms = tonumber(ARGV[2])
local results = {'hit', 'miss', 'stale', 'coalesced', 'bypass'}

local err = int_arg_error(now_ms, 0, 'now_ms') or int_arg_error(ttl_ms, 1, 'ttl_ms')
if err then
  return redis.error_reply(err)
end
local deltas = {}
for i, name in ipairs(results) do
  deltas[i] = tonumber(ARGV[2 + i])
  err = int_arg_error(deltas[i], 0, name)
  if err then
    return redis.error_reply(err)
  end
end

drop_wrong_types({stats_key}, {'hash'})
local minute = math.floor(now_or_server_ms(now_ms) / 60000)
local slot = tostring(minute % 60)
if redis.call('HGET', stats_key, 'm' .. slot) ~= tostring(minute) then
  for _, name in ipairs(results) do
    redis.call('HDEL', stats_key, slot .. ':' .. name)
  end
  redis.call('HSET', stats_key, 'm' .. slot, tostring(minute))
end
for i, name in ipairs(results) do
  if deltas[i] > 0 then
    local field = slot .. ':' .. name
    local added = redis.pcall('HINCRBY', stats_key, field, deltas[i])
    if type(added) == 'table' and added.err then
      redis.call('HSET', stats_key, field, deltas[i])  -- a corrupt count starts over
    end
  end
end
-- The ring covers an hour; the key expires once no process has counted for ttl_ms.
redis.call('PEXPIRE', stats_key, ttl_ms)
return minute
