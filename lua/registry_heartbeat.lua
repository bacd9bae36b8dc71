-- registry_heartbeat: renew one instance's lease, fenced by its registration token.
--
-- KEYS[1] members    zset: instance id -> heartbeat deadline, server ms ('+inf' = external)
-- KEYS[2] records    hash: instance id -> JSON record (only its expiry is refreshed)
-- KEYS[3] tokens     hash: instance id -> fencing token of the current registration
-- KEYS[4] suspects   hash: instance id -> server ms when self-preservation started keeping it
-- KEYS[5] tombstones zset: instance id -> server ms until which late heartbeats are refused
-- KEYS[6] revision   string: the service's revision counter
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] instance_id  non-empty
-- ARGV[3] token        the token the instance registered with, non-empty
-- ARGV[4] ttl_ms       lease length, > 0; the new deadline is now_ms + ttl_ms
-- ARGV[5] retention_ms expiry refreshed on every registry key
-- ARGV[6] channel      the service's registry channel (<prefix>:v1:{<service>}:registry:events),
--                      same {hash tag} as the KEYS, else MSFW_BADARG (SPUBLISH on Cluster)
-- ARGV[7] service      service name, put in the event payload
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: {code, revision, deadline_ms}
--        code  1: renewed (deadline_ms is the new deadline; 0 for an external instance)
--        code  0: unknown id (expired and reaped, data lost, or its record gone): register
--                 again
--        code -1: fenced: deregistered (tombstone) or another registration owns the id; stop
--
-- Idempotent: renewing twice sets the same kind of deadline. A plain renewal does not bump
-- the revision (so discovery caches stay valid); clearing a suspect mark does.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/drop_wrong_types.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
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
local now_ms = tonumber(ARGV[1])
local instance_id = ARGV[2]
local token = ARGV[3]
local ttl_ms = tonumber(ARGV[4])
local retention_ms = tonumber(ARGV[5])
local channel = ARGV[6]
local service = ARGV[7]

local err = int_arg_error(now_ms, 0, 'now_ms')
  or empty_arg_error('instance_id', instance_id)
  or empty_arg_error('token', token)
  or int_arg_error(ttl_ms, 1, 'ttl_ms')
  or int_arg_error(retention_ms, 1, 'retention_ms')
  or empty_arg_error('channel and service', channel, service)
  or slot_arg_error(revision_key, channel)
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)
-- A key of another type (foreign or corrupt) reads as absent; the writes below re-create it.
drop_wrong_types({members_key, records_key, tokens_key, suspects_key, tombstones_key,
  revision_key},
  {'zset', 'hash', 'hash', 'hash', 'zset', 'string'})

local current = redis.call('HGET', tokens_key, instance_id)
if current and redis.call('HEXISTS', records_key, instance_id) == 0 then
  -- Its record vanished (a foreign value deleted, eviction): unknown, so the owner
  -- registers again and rewrites it.
  current = nil
end
if not current then
  local tomb_until = redis.call('ZSCORE', tombstones_key, instance_id)
  if tomb_until and tonumber(tomb_until) > now_ms then
    return {-1, stored_revision(revision_key), 0}
  end
  return {0, stored_revision(revision_key), 0}
end
if current ~= token then
  return {-1, stored_revision(revision_key), 0}
end

local deadline = 0
if redis.call('ZSCORE', members_key, instance_id) ~= 'inf' then
  -- External instances keep their infinite deadline; everything else gets a new lease.
  deadline = now_ms + ttl_ms
  redis.call('ZADD', members_key, deadline, instance_id)
end
local revision
if redis.call('HDEL', suspects_key, instance_id) == 1 then
  revision = bump_revision(revision_key, now_ms, retention_ms, channel, service)
else
  revision = stored_revision(revision_key)
end
pexpire_all({members_key, records_key, tokens_key, suspects_key, revision_key}, retention_ms)
return {1, revision, deadline}
