-- registry_services: the names in the cross-service index, pruning stale entries.
--
-- KEYS[1] services  zset (global key, no hash tag): service name -> last touch, server ms
-- ARGV[1] now_ms       server time to use; 0 reads TIME (tests pass a fixed value)
-- ARGV[2] retention_ms entries untouched for longer are pruned
-- Reply: flat array of service names, sorted by name.
--
-- A name may outlive its last instance until it is pruned: readers treat a service with
-- no instances as empty, not as an error.
local services_key = KEYS[1]
local now_ms = tonumber(ARGV[1])
local retention_ms = tonumber(ARGV[2])

local function is_int(value, min)
  return value ~= nil and value == math.floor(value) and value >= min
    and value <= 9007199254740991
end

if not is_int(now_ms, 0) then
  return redis.error_reply('MSFW_BADARG now_ms must be an integer >= 0')
end
if not is_int(retention_ms, 1) then
  return redis.error_reply('MSFW_BADARG retention_ms must be an integer >= 1')
end
if now_ms == 0 then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Pruning writes nothing new, so the key keeps the expiry its last touch gave it.
redis.call('ZREMRANGEBYSCORE', services_key, '-inf', now_ms - retention_ms)
local names = redis.call('ZRANGE', services_key, 0, -1)
table.sort(names)
return names
