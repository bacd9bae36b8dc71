-- registry_register: add or replace one instance of a service and bump the service revision.
--
-- KEYS[1] members    zset: instance id -> heartbeat deadline, server ms ('+inf' = external)
-- KEYS[2] records    hash: instance id -> JSON record written by the client (opaque here)
-- KEYS[3] tokens     hash: instance id -> fencing token of the current registration
-- KEYS[4] suspects   hash: instance id -> server ms when self-preservation started keeping it
-- KEYS[5] tombstones zset: instance id -> server ms until which late heartbeats are refused
-- KEYS[6] revision   string: the service's revision counter
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] instance_id  non-empty
-- ARGV[3] token        fencing token of this registration, non-empty
-- ARGV[4] ttl_ms       heartbeat lease; 0 registers an external instance that never expires
-- ARGV[5] record       JSON record, non-empty
-- ARGV[6] retention_ms expiry set on every key written, refreshed by every registry script
-- ARGV[7] channel      the service's registry channel (<prefix>:v1:{<service>}:registry:events),
--                      same {hash tag} as the KEYS, else MSFW_BADARG (SPUBLISH on Cluster)
-- ARGV[8] service      service name, put in the event payload
-- ARGV[last] - publish mode, appended by the store: 'spublish' on Cluster, else 'publish' (lib/publish.lua)
-- Reply: {revision, replaced, members}: replaced is 1 when the id was registered already
--        (its old token is now fenced), members is the service's instance count.
--
-- Every key and the channel share the {service} hash tag. The revision event is
-- "<service>\n<revision>".
-- A registration clears a tombstone, a suspect mark and the old token of the same id.

-- @include "lib/now_or_server_ms.lua"
-- @include "lib/drop_wrong_types.lua"
-- @include "lib/int_arg_error.lua"
-- @include "lib/empty_arg_error.lua"
-- @include "lib/pexpire_all.lua"
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
local record = ARGV[5]
local retention_ms = tonumber(ARGV[6])
local channel = ARGV[7]
local service = ARGV[8]

local err = int_arg_error(now_ms, 0, 'now_ms')
  or empty_arg_error('instance_id', instance_id)
  or empty_arg_error('token', token)
  or int_arg_error(ttl_ms, 0, 'ttl_ms')
  or empty_arg_error('record', record)
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

local replaced = redis.call('HEXISTS', tokens_key, instance_id)
local deadline = '+inf'
if ttl_ms > 0 then
  deadline = now_ms + ttl_ms
end
redis.call('ZADD', members_key, deadline, instance_id)
redis.call('HSET', records_key, instance_id, record)
redis.call('HSET', tokens_key, instance_id, token)
redis.call('HDEL', suspects_key, instance_id)
redis.call('ZREM', tombstones_key, instance_id)
-- One long retention for every registry key: ephemeral instances leave through the
-- deadline reaping in registry_list, external ones only by deregistration; the expiry
-- only stops an abandoned service's keys from living forever.
pexpire_all({members_key, records_key, tokens_key, suspects_key, tombstones_key}, retention_ms)
local revision = bump_revision(revision_key, now_ms, retention_ms, channel, service)
redis.call('PEXPIRE', revision_key, retention_ms)
return {revision, replaced, redis.call('ZCARD', members_key)}
