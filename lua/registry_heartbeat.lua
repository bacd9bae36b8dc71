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
-- ARGV[6] channel      pub/sub channel for revision events
-- ARGV[7] service      service name, put in the event payload
-- Reply: {code, revision, deadline_ms}
--        code  1: renewed (deadline_ms is the new deadline; 0 for an external instance)
--        code  0: unknown id (expired and reaped, or data lost): register again
--        code -1: fenced: deregistered (tombstone) or another registration owns the id; stop
--
-- Idempotent: renewing twice sets the same kind of deadline. A plain renewal does not bump
-- the revision (so discovery caches stay valid); clearing a suspect mark does.
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
if not is_int(ttl_ms, 1) then
  return redis.error_reply('MSFW_BADARG ttl_ms must be an integer >= 1')
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

local function current_revision()
  return tonumber(redis.call('GET', revision_key) or '0')
end

local current = redis.call('HGET', tokens_key, instance_id)
if not current then
  local tomb_until = redis.call('ZSCORE', tombstones_key, instance_id)
  if tomb_until and tonumber(tomb_until) > now_ms then
    return {-1, current_revision(), 0}
  end
  return {0, current_revision(), 0}
end
if current ~= token then
  return {-1, current_revision(), 0}
end

local deadline = 0
if redis.call('ZSCORE', members_key, instance_id) ~= 'inf' then
  -- External instances keep their infinite deadline; everything else gets a new lease.
  deadline = now_ms + ttl_ms
  redis.call('ZADD', members_key, deadline, instance_id)
end
local revision
if redis.call('HDEL', suspects_key, instance_id) == 1 then
  if redis.call('EXISTS', revision_key) == 0 then
    -- See registry_register: a recreated revision starts from server time.
    redis.call('SET', revision_key, now_ms, 'PX', retention_ms)
  end
  revision = redis.call('INCR', revision_key)
  redis.call('PUBLISH', channel, service .. '\n' .. revision)
else
  revision = current_revision()
end
for _, key in ipairs({members_key, records_key, tokens_key, suspects_key, revision_key}) do
  redis.call('PEXPIRE', key, retention_ms)
end
return {1, revision, deadline}
