-- health_report: apply one probe round's results to the health state machine of a service.
--
-- KEYS[1] probe     hash: next_ms, token, lease_until_ms, round (see health_acquire)
-- KEYS[2] health    hash: instance id -> "<state>|<fails>|<successes>|<since_ms>"
-- KEYS[3] service   hash: healthy (0|1), seq, changed_ms, probed_ms, members, healthy_members,
--                   unknown_members
-- KEYS[4] members   zset: the registry's instances of the service (read only)
-- KEYS[5] revision  string: the registry revision, bumped when an instance's state changes
-- ARGV[1] now_ms             server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] token              the token health_acquire handed out for this round
-- ARGV[3] failure_threshold  consecutive failures that make a healthy instance unhealthy
-- ARGV[4] success_threshold  consecutive successes that make an unhealthy one healthy
-- ARGV[5] retention_ms       expiry refreshed on the health keys
-- ARGV[6] health_channel     the service's health channel ({service}:health:events)
-- ARGV[7] registry_channel   the service's registry channel ({service}:registry:events)
--                            both with the same {hash tag} as the KEYS, else MSFW_BADARG:
--                            events stay in the script's slot (SPUBLISH on Cluster)
-- ARGV[8] service            service name, put in event payloads
-- ARGV[9] count              number of results that follow
-- ARGV[10..] count x (instance_id, ok) with ok 1 (probe passed) or 0 (failed)
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: {code, healthy, changed, seq, revision, transitions, then transitions x
--         (instance_id, from_state, to_state)}
--        code 1: applied; -1: the round's token is not current (another round or a
--        report was already applied); -2: the round's lease ran out. On -1/-2 nothing
--        changes and healthy is the stored value (-1 when none is stored yet).
--
-- Instance states: healthy -(failure_threshold consecutive failures)-> unhealthy
-- -(a success)-> recovering -(success_threshold consecutive successes in all)-> healthy;
-- a failure while recovering goes straight back to unhealthy. An instance never probed
-- is unknown: it is not counted healthy; a passed probe makes it healthy, and
-- failure_threshold consecutive failed ones unhealthy (as from healthy). The service is
-- healthy while at least one registered instance is; unknown_members counts the unknown.
-- The first report sets the baseline (seq = now_ms) without an event; afterwards each
-- flip of the service's health bumps seq and publishes "<service>\n<seq>\n<healthy>" once
-- on health_channel.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/arg_error.lua"
-- @include "lib/is_int.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
-- @include "lib/pexpire_all.lua"
-- @include "lib/stored_revision.lua"
-- @include "lib/slot_arg_error.lua"
-- @include "lib/bump_revision.lua"
-- @include "lib/publish.lua"

local probe_key = KEYS[1]
local health_key = KEYS[2]
local service_key = KEYS[3]
local members_key = KEYS[4]
local revision_key = KEYS[5]
local now_ms = tonumber(ARGV[1])
local token = ARGV[2]
local failure_threshold = tonumber(ARGV[3])
local success_threshold = tonumber(ARGV[4])
local retention_ms = tonumber(ARGV[5])
local health_channel = ARGV[6]
local registry_channel = ARGV[7]
local service = ARGV[8]
local count = tonumber(ARGV[9])

local err = int_arg_error(now_ms, 0, 'now_ms')
  or empty_arg_error('token', token)
  or int_arg_error(failure_threshold, 1, 'failure_threshold')
  or int_arg_error(success_threshold, 1, 'success_threshold')
  or int_arg_error(retention_ms, 1, 'retention_ms')
  or empty_arg_error('channels and service', health_channel, registry_channel, service)
  or slot_arg_error(service_key, health_channel, registry_channel)
  or arg_error(not is_int(count, 0) or publish_argc ~= 9 + 2 * count,
    'count must match the number of (instance_id, ok) pairs')
if err then
  return redis.error_reply(err)
end
for i = 1, count do
  local ok = ARGV[9 + 2 * i]
  if ARGV[8 + 2 * i] == '' or (ok ~= '0' and ok ~= '1') then
    return redis.error_reply('MSFW_BADARG each result needs an instance_id and ok 0 or 1')
  end
end
now_ms = now_or_server_ms(now_ms)

local function stored_healthy()
  return tonumber(redis.call('HGET', service_key, 'healthy') or '-1')
end

local round_token = redis.call('HGET', probe_key, 'token')
local seq = tonumber(redis.call('HGET', service_key, 'seq') or '0')
if round_token ~= token then
  return {-1, stored_healthy(), 0, seq, stored_revision(revision_key), 0}
end
if now_ms > tonumber(redis.call('HGET', probe_key, 'lease_until_ms') or '0') then
  return {-2, stored_healthy(), 0, seq, stored_revision(revision_key), 0}
end
-- A round reports once: a replayed report must not count its results twice.
redis.call('HSET', probe_key, 'token', '')

local function parse(value)
  if value then
    local state, fails, successes, since = string.match(value, '^(%a+)|(%d+)|(%d+)|(%d+)$')
    if state then
      return state, tonumber(fails), tonumber(successes), tonumber(since)
    end
  end
  return 'unknown', 0, 0, now_ms
end

local transitions = {}
local visible = false
for i = 1, count do
  local instance_id = ARGV[8 + 2 * i]
  local ok = ARGV[9 + 2 * i] == '1'
  -- Results for instances deregistered while the probe ran are dropped.
  if redis.call('ZSCORE', members_key, instance_id) then
    local state, fails, successes, since = parse(redis.call('HGET', health_key, instance_id))
    local new_state = state
    if ok then
      fails = 0
      if state == 'healthy' or state == 'unknown' then
        new_state = 'healthy'
        successes = 0
      else
        successes = successes + 1
        if successes >= success_threshold then
          new_state = 'healthy'
          successes = 0
        else
          new_state = 'recovering'
        end
      end
    else
      successes = 0
      fails = fails + 1
      if (state ~= 'healthy' and state ~= 'unknown') or fails >= failure_threshold then
        new_state = 'unhealthy'
      end
    end
    if new_state ~= state then
      since = now_ms
      transitions[#transitions + 1] = {instance_id, state, new_state}
      -- Discovery shows an unknown instance as healthy: that step changes nothing there.
      if state ~= 'unknown' or new_state ~= 'healthy' then
        visible = true
      end
    end
    redis.call('HSET', health_key, instance_id,
      new_state .. '|' .. fails .. '|' .. successes .. '|' .. string.format('%d', since))
  end
end

-- Drop state of instances that left the registry, and count the healthy ones.
local members = redis.call('ZRANGE', members_key, 0, -1)
local registered = {}
local healthy_members = 0
local unknown_members = 0
for _, instance_id in ipairs(members) do
  registered[instance_id] = true
  local state = parse(redis.call('HGET', health_key, instance_id))
  if state == 'healthy' then
    healthy_members = healthy_members + 1
  elseif state == 'unknown' then
    unknown_members = unknown_members + 1
  end
end
for _, instance_id in ipairs(redis.call('HKEYS', health_key)) do
  if not registered[instance_id] then
    redis.call('HDEL', health_key, instance_id)
  end
end

local healthy = 0
if healthy_members > 0 then
  healthy = 1
end
local previous = stored_healthy()
local changed = 0
if previous == -1 then
  -- The baseline's seq is server time, not 0, so that sequence numbers keep growing
  -- even when this hash is lost (expiry, data loss) and created again.
  seq = now_ms
  redis.call('HSET', service_key, 'healthy', healthy, 'seq', seq, 'changed_ms', now_ms)
elseif previous ~= healthy then
  changed = 1
  seq = redis.call('HINCRBY', service_key, 'seq', 1)
  redis.call('HSET', service_key, 'healthy', healthy, 'changed_ms', now_ms)
  publish(health_channel, service .. '\n' .. seq .. '\n' .. healthy)
end
redis.call('HSET', service_key, 'probed_ms', now_ms, 'members', #members,
  'healthy_members', healthy_members, 'unknown_members', unknown_members)

local revision
if visible then
  -- Discovery shows each instance's health, so its cache must see the change too.
  revision = bump_revision(revision_key, now_ms, retention_ms, registry_channel, service)
else
  revision = stored_revision(revision_key)
end
pexpire_all({probe_key, health_key, service_key}, retention_ms)

local reply = {1, healthy, changed, seq, revision, #transitions}
for _, t in ipairs(transitions) do
  reply[#reply + 1] = t[1]
  reply[#reply + 1] = t[2]
  reply[#reply + 1] = t[3]
end
return reply
