-- health_acquire: take the probe round of a service if it is due, so one replica probes.
--
-- KEYS[1] probe  hash: next_ms (when the next round may start), token, lease_until_ms, round
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] token        the caller's round token, non-empty (fences its report)
-- ARGV[3] interval_ms  time between rounds, >= 1
-- ARGV[4] lease_ms     how long the round's report is accepted, >= 1
-- ARGV[5] retention_ms expiry of the probe hash
-- Reply: {won, round, wait_ms}
--        won 1: the caller probes round number `round` now and reports with its token
--        won 0: another replica has the current round; `round` is that round's number
--        wait_ms: ms until the next round may start
--
-- Rounds never overlap: the next one starts max(interval_ms, lease_ms) after this one, so
-- a slow prober's report cannot race the next round's. A prober that dies simply loses
-- its round; the next round is taken by whichever replica asks first after next_ms.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"

local probe_key = KEYS[1]
local now_ms = tonumber(ARGV[1])
local token = ARGV[2]
local interval_ms = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local retention_ms = tonumber(ARGV[5])

local err = int_arg_error(now_ms, 0, 'now_ms')
  or empty_arg_error('token', token)
  or int_arg_error(interval_ms, 1, 'interval_ms')
  or int_arg_error(lease_ms, 1, 'lease_ms')
  or int_arg_error(retention_ms, 1, 'retention_ms')
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

local next_ms = tonumber(redis.call('HGET', probe_key, 'next_ms') or '0')
local round = tonumber(redis.call('HGET', probe_key, 'round') or '0')
if now_ms < next_ms then
  return {0, round, next_ms - now_ms}
end
local spacing_ms = math.max(interval_ms, lease_ms)
round = redis.call('HINCRBY', probe_key, 'round', 1)
redis.call('HSET', probe_key, 'next_ms', now_ms + spacing_ms, 'token', token,
  'lease_until_ms', now_ms + lease_ms)
-- The hash only schedules rounds; if it expires, the next caller simply probes at once.
redis.call('PEXPIRE', probe_key, retention_ms)
return {1, round, spacing_ms}
