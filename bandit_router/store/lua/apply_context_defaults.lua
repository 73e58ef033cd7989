-- Credit the default reward to decisions of a contextual experiment whose deadline passed
-- without a reward, folding in the features each decision used (kept in the features hash
-- by record_decisions.lua). Runs after lua/context_statistics.lua (prepended by the store).
-- Invariant: exactly once per decision, whatever number of replicas sweep at the same time
-- (the ZREM of the pending member is the claim, and only its winner writes); a decision
-- whose features are missing or were recorded in another feature space than the
-- statistics' is dropped from pending without touching the statistics.
-- KEYS[1] stats hash, KEYS[2] pending zset, KEYS[3] decision log stream, KEYS[4] features
-- hash, KEYS[5..] dedupe markers, one per member
-- ARGV[1] incarnation, ARGV[2] default value, ARGV[3] marker ttl ms, ARGV[4] gamma,
-- ARGV[5] log max length, ARGV[6] statistics kind, ARGV[7] number of features d,
-- ARGV[8] largest feature magnitude, ARGV[9..] members (``nonce|arm``), in KEYS[5..]'s order
-- Returns a flat list: arm, arm, ... of the defaults credited.
local stats, pending, features = KEYS[1], KEYS[2], KEYS[4]
local head = redis.call('HMGET', stats, '_inc', '_space')
if head[1] ~= ARGV[1] then return {} end
local value_s, ttl, gamma, maxlen = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local kind, dim, feature_limit = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local value = tonumber(value_s)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local credited = {}
for i = 5, #KEYS do
  local member = ARGV[i + 4]
  local score = redis.call('ZSCORE', pending, member)
  if score and tonumber(score) <= now then
    redis.call('ZREM', pending, member)
    local nonce, arm = string.match(member, '^(.-)|(.*)$')
    local f_space, z, x = parse_features(redis.call('HGET', features, nonce), feature_limit)
    redis.call('HDEL', features, nonce)
    if f_space ~= nil and f_space == head[2] and #x == dim
        and redis.call('EXISTS', KEYS[i]) == 0 and redis.call('HEXISTS', stats, arm .. ':n') == 1 then
      redis.call('SET', KEYS[i], 'd:' .. value_s, 'PX', ttl)
      local w, target = working(kind, z, value)
      credit_context(stats, gamma, arm, 1, value_s, fmt(value * value), x, w, target)
      redis.call('HINCRBY', stats, '_version', 1)
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'type', 'default', 'nonce', nonce,
        'reward', value_s)
      credited[#credited + 1] = arm
    end
  end
end
flush_context(stats)
return credited
