-- bump_revision(revision_key, now_ms, retention_ms, channel, service): add one to a
-- service's registry revision and publish '<service>\n<revision>' on channel, the
-- service's own registry channel (same slot: SPUBLISH on Cluster); returns it.
-- @include "lib/publish.lua"
local function bump_revision(revision_key, now_ms, retention_ms, channel, service)
  if redis.call('EXISTS', revision_key) == 0 then
    -- Start from server time, not 0: a revision recreated after its key expired is then
    -- larger than any value a client may still have cached.
    redis.call('SET', revision_key, now_ms, 'PX', retention_ms)
  end
  local revision = redis.call('INCR', revision_key)
  publish(channel, service .. '\n' .. revision)
  return revision
end
