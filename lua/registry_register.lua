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
-- ARGV[7] channel      pub/sub channel for revision events
-- ARGV[8] service      service name, put in the event payload
-- Reply: {revision, replaced, members}: replaced is 1 when the id was registered already
--        (its old token is now fenced), members is the service's instance count.
--
-- Every key shares the {service} hash tag. The revision event is "<service>\n<revision>".
-- A registration clears a tombstone, a suspect mark and the old token of the same id.
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

local function is_int(value, min)
  return value ~= nil and value == math.floor(value) and value >= min
    and value <= 9007199254740991
end

if not is_int(now_ms, 0) then
  return redis.error_reply('MSFW_BADARG now_ms must be an integer >= 0')
end
if instance_id == nil or instance_id == '' then
  return redis.error_reply('MSFW_BADARG instance_id must not be empty')
end
if token == nil or token == '' then
  return redis.error_reply('MSFW_BADARG token must not be empty')
end
if not is_int(ttl_ms, 0) then
  return redis.error_reply('MSFW_BADARG ttl_ms must be an integer >= 0')
end
if record == nil or record == '' then
  return redis.error_reply('MSFW_BADARG record must not be empty')
end
if not is_int(retention_ms, 1) then
  return redis.error_reply('MSFW_BADARG retention_ms must be an integer >= 1')
end
if channel == nil or channel == '' or service == nil or service == '' then
  return redis.error_reply('MSFW_BADARG channel and service must not be empty')
end
if now_ms == 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function bump_revision()
  if redis.call('EXISTS', revision_key) == 0 then
    -- Start from server time, not 0: a revision recreated after its key expired is then
    -- larger than any value a client may still have cached.
    redis.call('SET', revision_key, now_ms, 'PX', retention_ms)
  end
  local revision = redis.call('INCR', revision_key)
  redis.call('PEXPIRE', revision_key, retention_ms)
  redis.call('PUBLISH', channel, service .. '\n' .. revision)
  return revision
end

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
for _, key in ipairs({members_key, records_key, tokens_key, suspects_key, tombstones_key}) do
  redis.call('PEXPIRE', key, retention_ms)
end
local revision = bump_revision()
return {revision, replaced, redis.call('ZCARD', members_key)}
