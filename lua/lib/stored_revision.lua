-- stored_revision(revision_key): a service's registry revision, 0 when none is stored.
local function stored_revision(revision_key)
  return tonumber(redis.call('GET', revision_key) or '0')
end
