-- registry_deregister: remove one instance at once and leave a tombstone that fences it.
--
-- KEYS[1] members    zset: instance id -> heartbeat deadline, server ms ('+inf' = external)
-- KEYS[2] records    hash: instance id -> JSON record
-- KEYS[3] tokens     hash: instance id -> fencing token of the current registration
-- KEYS[4] suspects   hash: instance id -> server ms when self-preservation started keeping it
-- KEYS[5] tombstones zset: instance id -> server ms until which late heartbeats are refused
-- KEYS[6] revision   string: the service's revision counter
-- KEYS[7] health     hash: instance id -> probe state (the entry is dropped with the instance)
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] instance_id  non-empty
-- ARGV[3] token        the owner's token, or '' to remove whatever registration holds the id
-- ARGV[4] tombstone_ms how long late heartbeats of this id are refused, >= 1
-- ARGV[5] retention_ms expiry refreshed on every registry key
-- ARGV[6] channel      the service's registry channel (<prefix>:v1:{<service>}:registry:events),
--                      same {hash tag} as the KEYS, else MSFW_BADARG (SPUBLISH on Cluster)
-- ARGV[7] service      service name, put in the event payload
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: {code, revision, members}
--        code  1: removed
--        code  0: was not registered (the tombstone is still written)
--        code -1: fenced: a token was given and another registration owns the id; no change

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/arg_error.lua"
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
local instance_id = ARGV[2]
local token = ARGV[3]
local tombstone_ms = tonumber(ARGV[4])
local retention_ms = tonumber(ARGV[5])
local channel = ARGV[6]
local service = ARGV[7]

local err = int_arg_error(now_ms, 0, 'now_ms')
  or empty_arg_error('instance_id', instance_id)
  or arg_error(token == nil, 'token is missing (pass an empty string for any)')
  or int_arg_error(tombstone_ms, 1, 'tombstone_ms')
  or int_arg_error(retention_ms, 1, 'retention_ms')
  or empty_arg_error('channel and service', channel, service)
  or slot_arg_error(revision_key, channel)
if err then
  return redis.error_reply(err)
end
now_ms = now_or_server_ms(now_ms)

local current = redis.call('HGET', tokens_key, instance_id)
if token ~= '' and current and current ~= token then
  return {-1, stored_revision(revision_key), redis.call('ZCARD', members_key)}
end

local removed = drop_instance(instance_id, members_key, records_key, tokens_key, suspects_key,
  health_key)
redis.call('ZADD', tombstones_key, now_ms + tombstone_ms, instance_id)
-- Tombstones live in one zset scored by their end, so old ones are pruned here in
-- O(log n + m) without a key per tombstone.
reap_expired(tombstones_key, now_ms)
pexpire_all({members_key, records_key, tokens_key, suspects_key, tombstones_key, health_key},
  retention_ms)
local revision
if removed == 1 then
  revision = bump_revision(revision_key, now_ms, retention_ms, channel, service)
  redis.call('PEXPIRE', revision_key, retention_ms)
else
  revision = stored_revision(revision_key)
end
return {removed, revision, redis.call('ZCARD', members_key)}
