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
-- ARGV[6] channel      pub/sub channel for revision events
-- ARGV[7] service      service name, put in the event payload
-- Reply: {code, revision, members}
--        code  1: removed
--        code  0: was not registered (the tombstone is still written)
--        code -1: fenced: a token was given and another registration owns the id; no change
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
if token == nil then
  return redis.error_reply('MSFW_BADARG token is missing (pass an empty string for any)')
end
if not is_int(tombstone_ms, 1) then
  return redis.error_reply('MSFW_BADARG tombstone_ms must be an integer >= 1')
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

local current = redis.call('HGET', tokens_key, instance_id)
if token ~= '' and current and current ~= token then
  return {-1, tonumber(redis.call('GET', revision_key) or '0'), redis.call('ZCARD', members_key)}
end

local removed = redis.call('ZREM', members_key, instance_id)
redis.call('HDEL', records_key, instance_id)
redis.call('HDEL', tokens_key, instance_id)
redis.call('HDEL', suspects_key, instance_id)
redis.call('HDEL', health_key, instance_id)
redis.call('ZADD', tombstones_key, now_ms + tombstone_ms, instance_id)
-- Tombstones live in one zset scored by their end, so old ones are pruned here in
-- O(log n + m) without a key per tombstone.
redis.call('ZREMRANGEBYSCORE', tombstones_key, '-inf', now_ms)
for _, key in ipairs({members_key, records_key, tokens_key, suspects_key, tombstones_key,
                      health_key}) do
  redis.call('PEXPIRE', key, retention_ms)
end
local revision
if removed == 1 then
  if redis.call('EXISTS', revision_key) == 0 then
    -- See registry_register: a recreated revision starts from server time.
    redis.call('SET', revision_key, now_ms, 'PX', retention_ms)
  end
  revision = redis.call('INCR', revision_key)
  redis.call('PEXPIRE', revision_key, retention_ms)
  redis.call('PUBLISH', channel, service .. '\n' .. revision)
else
  revision = tonumber(redis.call('GET', revision_key) or '0')
end
return {removed, revision, redis.call('ZCARD', members_key)}
