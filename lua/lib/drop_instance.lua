-- drop_instance(instance_id, members_key, records_key, tokens_key, suspects_key, health_key):
-- remove one instance from every per-instance registry structure; returns 1 when it was a
-- member, else 0.
local function drop_instance(instance_id, members_key, records_key, tokens_key, suspects_key,
                             health_key)
  local removed = redis.call('ZREM', members_key, instance_id)
  for _, key in ipairs({records_key, tokens_key, suspects_key, health_key}) do
    redis.call('HDEL', key, instance_id)
  end
  return removed
end
