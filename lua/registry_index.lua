-- registry_index: record that a service exists in the cross-service index.
--
-- KEYS[1] services  zset (global key, no hash tag): service name -> last touch, server ms
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] service      service name, non-empty
-- ARGV[3] retention_ms entries untouched for longer are pruned; also the key's expiry
-- Reply: integer, the number of services in the index.
--
-- The index is a separate single-key call made after a per-service script, never part of
-- one multi-slot script: its key has no {service} tag, so it lives in its own slot.
local services_key = KEYS[1]
local now_ms = tonumber(ARGV[1])
local service = ARGV[2]
local retention_ms = tonumber(ARGV[3])

local function is_int(value, min)
  return value ~= nil and value == math.floor(value) and value >= min
    and value <= 9007199254740991
end

if not is_int(now_ms, 0) then
  return redis.error_reply('MSFW_BADARG now_ms must be an integer >= 0')
end
if service == nil or service == '' then
  return redis.error_reply('MSFW_BADARG service must not be empty')
end
if not is_int(retention_ms, 1) then
  return redis.error_reply('MSFW_BADARG retention_ms must be an integer >= 1')
end
if now_ms == 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

redis.call('ZADD', services_key, now_ms, service)
redis.call('ZREMRANGEBYSCORE', services_key, '-inf', now_ms - retention_ms)
redis.call('PEXPIRE', services_key, retention_ms)
return redis.call('ZCARD', services_key)
