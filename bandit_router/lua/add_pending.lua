-- Register decisions that await a reward, so the sweeper can credit their default reward.
-- Invariant: a decision is never pending once it has a dedupe marker (a reward that overtook
-- the batched write of its decision must not be followed by a default reward), and nothing
-- is written for an experiment that was deleted or re-created since the decision.
-- KEYS[1] stats hash, KEYS[2] pending zset, KEYS[3..] dedupe markers, one per decision
-- ARGV[1] incarnation, then per decision: member, deadline_ms
-- Returns the number of decisions registered.
local stats, pending = KEYS[1], KEYS[2]
if redis.call('HGET', stats, '_inc') ~= ARGV[1] then return 0 end
local added = 0
for i = 3, #KEYS do
  local member, deadline = ARGV[(i - 3) * 2 + 2], ARGV[(i - 3) * 2 + 3]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('ZADD', pending, deadline, member)
    added = added + 1
  end
end
return added
