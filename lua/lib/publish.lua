-- publish(channel, message): send an event on a per-service channel; returns receivers.
--
-- The store appends one mode flag as the LAST ARGV of every script that includes this
-- file (scripts document it as ARGV[last]): 'spublish' on Redis Cluster, 'publish'
-- elsewhere. On Cluster a per-service event goes out by SPUBLISH and stays on the shard
-- that owns the channel; every per-service channel carries the service's {hash tag}, so
-- it is the slot of the script's own keys (SPUBLISH to another slot returns 0 silently
-- on 7.0). PUBLISH would be broadcast to every node of the cluster. Every event is per
-- service (breaker, cache, limits, registry, health), so there is no cross-service
-- publish. publish_argc is #ARGV without the flag, for scripts that count.
local publish_argc = #ARGV - 1
local publish_mode = ARGV[#ARGV]
if publish_mode ~= 'spublish' and publish_mode ~= 'publish' then
  return redis.error_reply("MSFW_BADARG the last argument must be the publish mode "
    .. "'spublish' or 'publish' (the store appends it)")
end
local function publish(channel, message)
  if publish_mode == 'spublish' then
    return redis.call('SPUBLISH', channel, message)
  end
  return redis.call('PUBLISH', channel, message)
end
