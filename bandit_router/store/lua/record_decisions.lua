-- Record a flush of decisions of one experiment: the log entry, the decision counters and
-- the pending records that await a reward (or the default reward at their deadline).
-- Invariant: nothing is written for an experiment that was deleted or re-created since the
-- decisions (no orphan keys), and a decision is never pending once it has a reward marker
-- (a reward that overtook this flush must not be followed by a default reward); a pending
-- decision of a contextual experiment has its features beside it (the default reward folds
-- them in: apply_context_defaults.lua), written and removed together with it.
-- Exactly once: a writer (one server process) numbers its flushes and sends a flush again,
-- unchanged, until Redis answers; a flush whose reply was lost (a timeout, a dropped
-- connection, a frozen Redis that runs it on waking) may thus arrive twice or more, and any
-- arrival at or below the writer's last recorded number writes nothing (route/recorder.py).
-- KEYS[1] stats hash, KEYS[2] pending zset, KEYS[3] decision log stream, KEYS[4] features
-- hash (nonce -> features string, see context_statistics.lua), KEYS[5] flush numbers hash
-- (writer -> number of its last flush written), KEYS[6..] reward markers, one per pending
-- decision
-- ARGV[1] incarnation, ARGV[2] log max length, ARGV[3] the flush's decision log document
-- (decision_log.py; '': none), ARGV[4] writer, ARGV[5] this flush's number, ARGV[6] TTL in
-- seconds of the flush numbers hash, ARGV[7] number C of arm/count pairs, then C pairs arm,
-- count, then one string of "member,deadline_ms;" (contextual:
-- "member,deadline_ms,features;") per pending decision, in the order of KEYS[6..] (one
-- argument instead of two or three per decision: packing arguments is most of the caller's
-- cost)
-- Returns the number of pending records added, or -1 for a flush already written.
local stats, pending, log, flushed = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
if redis.call('HGET', stats, '_inc') ~= ARGV[1] then return 0 end
local number = tonumber(ARGV[5])
if tonumber(redis.call('HGET', flushed, ARGV[4]) or '0') >= number then return -1 end
redis.call('HSET', flushed, ARGV[4], ARGV[5])
redis.call('EXPIRE', flushed, ARGV[6])
if ARGV[3] ~= '' then
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[2], '*', 'type', 'decisions', 'data', ARGV[3])
end
local c = tonumber(ARGV[7])
for i = 8, 7 + 2 * c, 2 do redis.call('HINCRBY', stats, ARGV[i] .. ':decisions', ARGV[i + 1]) end
local added = 0
local k = 6
for member, deadline, features in
    string.gmatch(ARGV[8 + 2 * c] or '', '([^,;]+),([^,;]+),?([^,;]*);') do
  if redis.call('EXISTS', KEYS[k]) == 0 then
    redis.call('ZADD', pending, deadline, member)
    if features ~= '' then
      redis.call('HSET', KEYS[4], string.match(member, '^(.-)|'), features)
    end
    added = added + 1
  end
  k = k + 1
end
return added
