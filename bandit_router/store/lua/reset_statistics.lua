-- Return an experiment's statistics to its priors, keeping the old ones as a snapshot.
-- Invariant: the snapshot and the reset happen together; rewards for decisions made before
-- the reset still count (the incarnation is unchanged) but land on the fresh statistics.
-- A contextual experiment's Gram matrices and vectors (<arm>:A:i:j, <arm>:b:i) go back to
-- zero (absent); its feature space (_space) is kept, so pending decisions still count.
-- KEYS[1] stats, KEYS[2] snapshots list, KEYS[3] audit stream; ARGV[1] snapshot JSON header
-- (without statistics), ARGV[2] max snapshots kept, ARGV[3] audit entries (audit.lua),
-- ARGV[4] audit stream max length, ARGV[5..] field, value pairs of the prior statistics
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return 'gone' end
local header = cjson.decode(ARGV[1])
-- The same reset arriving again (the client library resends a call whose reply it lost)
-- finds its own snapshot, by its unique id, on top: done, not a second reset.
local newest = redis.call('LRANGE', KEYS[2], 0, 0)[1]
if newest and cjson.decode(newest)['id'] == header['id'] then return 'ok' end
local stats = {}
for i = 1, #all, 2 do stats[all[i]] = all[i + 1] end
header['statistics'] = stats
redis.call('LPUSH', KEYS[2], cjson.encode(header))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
for i = 1, #all, 2 do
  if string.find(all[i], '^[^:]+:[Ab]:') then redis.call('HDEL', KEYS[1], all[i]) end
end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[1], '_version', 1)
append_audit(KEYS[3], ARGV[3], ARGV[4])
return 'ok'
