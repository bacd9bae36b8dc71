-- server_time_ms(): the Redis server's clock, in ms since the Unix epoch.
-- TIME is the one clock every replica agrees on; no client clock enters shared state.
local function server_time_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
