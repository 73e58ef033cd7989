-- Create an experiment: its config and its zeroed (or warm-started) statistics, together.
-- Invariant: never overwrites an existing experiment; stats always carry the incarnation of
-- the config, so decisions of an earlier experiment of the same name can never be credited.
-- KEYS[1] config, KEYS[2] stats, KEYS[3] audit stream; ARGV[1] config JSON, ARGV[2]
-- incarnation, ARGV[3] audit entries (audit.lua), ARGV[4] audit stream max length,
-- ARGV[5..] field, value pairs of the initial statistics
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], '_inc', ARGV[2], '_version', 0)
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
append_audit(KEYS[3], ARGV[3], ARGV[4])
return 'ok'
