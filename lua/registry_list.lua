-- registry_list: reap expired instances (with self-preservation) and list a service.
--
-- KEYS[1] members    zset: instance id -> heartbeat deadline, server ms ('+inf' = external)
-- KEYS[2] records    hash: instance id -> JSON record
-- KEYS[3] tokens     hash: instance id -> fencing token of the current registration
-- KEYS[4] suspects   hash: instance id -> server ms when self-preservation started keeping it
-- KEYS[5] tombstones zset: instance id -> server ms until which late heartbeats are refused
-- KEYS[6] revision   string: the service's revision counter
-- KEYS[7] health     hash: instance id -> probe state "<state>|<fails>|<successes>|<since_ms>"
-- ARGV[1] now_ms          server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] known_revision  the caller's cached revision; -1 always sends the full list
-- ARGV[3] share_permille  self-preservation starts when MORE than this share (per mille) of
--                         the expiring instances is past its deadline; 1000 disables it
-- ARGV[4] hold_ms         longest time past its deadline an instance is kept as suspect
-- ARGV[5] min_instances   self-preservation applies only to services with at least this
--                         many expiring instances
-- ARGV[6] retention_ms    expiry refreshed on every registry key
-- ARGV[7] channel         the service's registry channel (<prefix>:v1:{<service>}:registry:events),
--                         same {hash tag} as the KEYS, else MSFW_BADARG (SPUBLISH on Cluster)
-- ARGV[8] service         service name, put in the event payload
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: {revision, changed, evicted, newly_suspect, suspects, preserving, now_ms, count,
--         then count x (instance_id, deadline, record, suspect, health)}
--        changed is 0 when revision equals known_revision; count is then 0 and no
--        instances follow. deadline is server ms as a string, "inf" for an external
--        instance; suspect is 0 or 1; health is the probe state or "" if never probed.
--        A last element, after the instances, counts the keys of another type that
--        were deleted (read as absent: a foreign or corrupt value).
--
-- Reaping rules, all by server time (an instance is alive while now_ms < deadline):
--   * deadline + hold_ms <= now_ms: evicted, whatever else happens;
--   * otherwise past its deadline: evicted, unless more than share_permille of the
--     service's expiring instances are past their deadline together (and there are at
--     least min_instances of them). Then they are all kept and marked suspect: that
--     pattern is far more often a network or Redis blip than a fleet dying at once.
--     A heartbeat clears the mark; when the share falls back to the threshold or below,
--     the ones still past their deadline are evicted (release).

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/drop_wrong_types.lua"
-- @include "lib/arg_error.lua"
-- @include "lib/is_int.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
-- @include "lib/drop_instance.lua"
-- @include "lib/reap_expired.lua"
-- @include "lib/pexpire_all.lua"
-- @include "lib/stored_revision.lua"
-- @include "lib/slot_arg_error.lua"
-- @include "lib/bump_revision.lua"

local members_key = KEYS[1]
local records_key = KEYS[2]
local tokens_key = KEYS[3]
local suspects_key = KEYS[4]
local tombstones_key = KEYS[5]
local revision_key = KEYS[6]
local health_key = KEYS[7]
local now_ms = tonumber(ARGV[1])
local known_revision = tonumber(ARGV[2])
local share_permille = tonumber(ARGV[3])
local hold_ms = tonumber(ARGV[4])
local min_instances = tonumber(ARGV[5])
local retention_ms = tonumber(ARGV[6])
local channel = ARGV[7]
local service = ARGV[8]

local err = int_arg_error(now_ms, 0, 'now_ms')
  or int_arg_error(known_revision, -1, 'known_revision')
  or arg_error(not is_int(share_permille, 0) or share_permille > 1000,
    'share_permille must be an integer in 0..1000')
  or int_arg_error(hold_ms, 0, 'hold_ms')
  or int_arg_error(min_instances, 1, 'min_instances')
  or int_arg_error(retention_ms, 1, 'retention_ms')
  or empty_arg_error('channel and service', channel, service)
  or slot_arg_error(revision_key, channel)
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)
-- A key of another type (foreign or corrupt) reads as absent; the writes below re-create it.
local repaired = drop_wrong_types({members_key, records_key, tokens_key, suspects_key, tombstones_key,
  revision_key, health_key},
  {'zset', 'hash', 'hash', 'hash', 'zset', 'string', 'hash'})

local evicted = 0
local newly_suspect = 0
local preserving = 0

local function evict(instance_id)
  drop_instance(instance_id, members_key, records_key, tokens_key, suspects_key, health_key)
  evicted = evicted + 1
end

local hold_edge = now_ms - hold_ms
for _, instance_id in ipairs(redis.call('ZRANGEBYSCORE', members_key, '-inf', hold_edge)) do
  evict(instance_id)
end
local expired = redis.call('ZRANGEBYSCORE', members_key, '(' .. string.format('%d', hold_edge),
  now_ms)
if #expired > 0 then
  local expiring = redis.call('ZCARD', members_key)
    - redis.call('ZCOUNT', members_key, '+inf', '+inf')
  if expiring >= min_instances and #expired * 1000 > share_permille * expiring then
    preserving = 1
    for _, instance_id in ipairs(expired) do
      newly_suspect = newly_suspect + redis.call('HSETNX', suspects_key, instance_id, now_ms)
    end
  else
    for _, instance_id in ipairs(expired) do
      evict(instance_id)
    end
  end
end
reap_expired(tombstones_key, now_ms)

local revision
if evicted > 0 or newly_suspect > 0 then
  revision = bump_revision(revision_key, now_ms, retention_ms, channel, service)
else
  revision = stored_revision(revision_key)
end
-- Listing counts as use: it keeps an external-only service's keys from expiring.
pexpire_all({members_key, records_key, tokens_key, suspects_key, tombstones_key, revision_key,
  health_key}, retention_ms)

local suspects = redis.call('HLEN', suspects_key)
local reply = {revision, 0, evicted, newly_suspect, suspects, preserving, now_ms, 0}
if revision == known_revision then
  reply[#reply + 1] = repaired
  return reply
end
reply[2] = 1
local entries = redis.call('ZRANGE', members_key, 0, -1, 'WITHSCORES')
local count = 0
for i = 1, #entries, 2 do
  local instance_id = entries[i]
  local record = redis.call('HGET', records_key, instance_id)
  if record then
    count = count + 1
    reply[#reply + 1] = instance_id
    reply[#reply + 1] = entries[i + 1]
    reply[#reply + 1] = record
    reply[#reply + 1] = redis.call('HEXISTS', suspects_key, instance_id)
    reply[#reply + 1] = redis.call('HGET', health_key, instance_id) or ''
  end
end
reply[8] = count
reply[#reply + 1] = repaired
return reply
