-- reap_expired(zset_key, edge_ms): drop the members of a zset scored by expiry (server ms)
-- whose score is edge_ms or less; returns how many went. Leases, tombstones and index
-- entries all expire this way, in O(log n + m), without a key per member.
local function reap_expired(zset_key, edge_ms)
  return redis.call('ZREMRANGEBYSCORE', zset_key, '-inf', edge_ms)
end
