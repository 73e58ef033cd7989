-- Replace an experiment's config if it is still at the version the caller read.
-- Invariant: optimistic concurrency, no lost updates between operators on several replicas;
-- new arms get their statistics (kept if already present), removed arms lose theirs.
-- KEYS[1] config, KEYS[2] stats, KEYS[3] audit stream; ARGV[1] expected version, ARGV[2]
-- new config JSON, ARGV[3] audit entries (audit.lua), ARGV[4] audit stream max length,
-- ARGV[5] number N of field/value pairs to initialise (HSETNX), then those pairs, then the
-- fields to delete.
local current = redis.call('GET', KEYS[1])
if not current then return 'gone' end
-- The same update arriving again (the client library resends a call whose reply it lost)
-- finds its own config, which carries a unique updated_at: done, not a conflict.
if current == ARGV[2] then return 'ok' end
local version = cjson.decode(current)['version']
if tostring(version) ~= ARGV[1] then return 'conflict' end
redis.call('SET', KEYS[1], ARGV[2])
local n = tonumber(ARGV[5])
for i = 6, 5 + 2 * n, 2 do redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) end
for i = 6 + 2 * n, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
append_audit(KEYS[3], ARGV[3], ARGV[4])
return 'ok'
