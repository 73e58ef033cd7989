-- Replace an experiment's config and reset its statistics in one step: the update that
-- changes what the statistics mean (context_features, or the kind of policy), asked for
-- with UpdateExperimentRequest.reset_statistics.
-- Invariant: the new config and statistics that fit it appear together (optimistic
-- concurrency as update_experiment.lua); the old statistics are kept as a snapshot; pending
-- decisions and their features are dropped, since they were made in the old feature space
-- (their rewards are refused as stale: the new _space differs from theirs).
-- KEYS[1] config, KEYS[2] stats, KEYS[3] snapshots list, KEYS[4] pending zset,
-- KEYS[5] features hash, KEYS[6] audit stream
-- ARGV[1] expected version, ARGV[2] new config JSON, ARGV[3] snapshot JSON header,
-- ARGV[4] max snapshots kept, ARGV[5] audit entries (audit.lua), ARGV[6] audit stream max
-- length, ARGV[7..] field, value pairs of the fresh statistics
local current = redis.call('GET', KEYS[1])
if not current then return 'gone' end
-- The same update arriving again (the client library resends a call whose reply it lost)
-- finds its own config, which carries a unique updated_at: done, not a conflict.
if current == ARGV[2] then return 'ok' end
local version = cjson.decode(current)['version']
if tostring(version) ~= ARGV[1] then return 'conflict' end
local all = redis.call('HGETALL', KEYS[2])
local header = cjson.decode(ARGV[3])
local stats = {}
for i = 1, #all, 2 do stats[all[i]] = all[i + 1] end
header['statistics'] = stats
redis.call('LPUSH', KEYS[3], cjson.encode(header))
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
redis.call('SET', KEYS[1], ARGV[2])
for i = 1, #all, 2 do
  local f = all[i]
  if f ~= '_inc' and f ~= '_version' then redis.call('HDEL', KEYS[2], f) end
end
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[2], '_version', 1)
redis.call('DEL', KEYS[4], KEYS[5])
append_audit(KEYS[6], ARGV[5], ARGV[6])
return 'ok'
