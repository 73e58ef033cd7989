-- Create an experiment: its config and its zeroed (or warm-started) statistics, together.
-- Invariant: never overwrites an existing experiment (and a repeat of this very create
-- writes nothing); stats always carry the incarnation of
-- the config, so decisions of an earlier experiment of the same name can never be credited.
-- KEYS[1] config, KEYS[2] stats, KEYS[3] audit stream; ARGV[1] config JSON, ARGV[2]
-- incarnation, ARGV[3] audit entries (audit.lua), ARGV[4] audit stream max length,
-- ARGV[5..] field, value pairs of the initial statistics
local current = redis.call('GET', KEYS[1])
if current then
  -- The same create arriving again (the client library resends a call whose reply it
  -- lost) finds its own incarnation: done, not a conflict.
  if cjson.decode(current)['incarnation'] == ARGV[2] then return 'ok' end
  return 'exists'
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], '_inc', ARGV[2], '_version', 0)
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
append_audit(KEYS[3], ARGV[3], ARGV[4])
return 'ok'
