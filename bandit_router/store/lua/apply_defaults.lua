-- Credit the default reward to decisions whose deadline passed without a reward.
-- Runs after lua/statistics.lua (prepended by the store): fmt, credit.
-- Invariant: exactly once per decision, whatever number of replicas sweep at the same time:
-- the ZREM of the pending member is the claim, and only its winner writes.
-- KEYS[1] stats hash, KEYS[2] pending zset, KEYS[3] decision log stream,
-- KEYS[4..] dedupe markers, one per member
-- ARGV[1] incarnation, ARGV[2] default value, ARGV[3] marker ttl ms, ARGV[4] gamma,
-- ARGV[5] log max length, ARGV[6..] members (``nonce|arm``), in the order of KEYS[4..]
-- Returns a flat list: arm, arm, ... of the defaults credited.
local stats, pending = KEYS[1], KEYS[2]
if redis.call('HGET', stats, '_inc') ~= ARGV[1] then return {} end
local value_s, ttl, gamma, maxlen = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local value = tonumber(value_s)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local credited = {}
for i = 4, #KEYS do
  local member = ARGV[i + 2]
  local score = redis.call('ZSCORE', pending, member)
  if score and tonumber(score) <= now then
    redis.call('ZREM', pending, member)
    local nonce, arm = string.match(member, '^(.-)|(.*)$')
    if redis.call('EXISTS', KEYS[i]) == 0 and redis.call('HEXISTS', stats, arm .. ':n') == 1 then
      redis.call('SET', KEYS[i], 'd:' .. value_s, 'PX', ttl)
      credit(stats, gamma, arm, 1, value_s, fmt(value * value))
      redis.call('HINCRBY', stats, '_version', 1)
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'type', 'default', 'nonce', nonce,
        'reward', value_s)
      credited[#credited + 1] = arm
    end
  end
end
return credited
