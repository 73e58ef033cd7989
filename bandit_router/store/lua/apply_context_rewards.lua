-- Credit a group commit's rewards of one contextual experiment, each to its decision exactly
-- once, folding in the features the decision used (carried by its signed decision id).
-- Runs after lua/context_statistics.lua, lua/metrics.lua and lua/reward_markers.lua
-- (prepended by the store).
-- Invariant: as apply_rewards.lua (a decision changes the statistics at most once as a
-- reward, plus with the APPLY late rule one correction replacing its default reward; every
-- check before the first write), and the features folded into an arm's (n, A, b) are the
-- ones its decision used, in the feature space the statistics are kept in: a decision made
-- in another space (context_features or the kind of policy changed since, with a reset) is
-- 'stale' and writes nothing.
-- KEYS[1] stats hash, KEYS[2] pending zset, KEYS[3] decision log stream, KEYS[4] features
-- hash (nonce -> features of a pending decision), KEYS[5] guard hash, KEYS[6] sketch hash
-- (lua/metrics.lua), KEYS[7..] dedupe marker of each reward
-- ARGV[1] incarnation, ARGV[2] late rule ('ignore'|'apply'), ARGV[3] gamma,
-- ARGV[4] log max length, ARGV[5] one string of
--   "arm|value|deadline_ms|learn|marker_ttl_ms|nonce|features;" per reward (with
--   "|name=value,..." before the ';' when it carries metrics, lua/metrics.lua),
-- ARGV[6] largest accepted reward magnitude, ARGV[7] feature space, ARGV[8] statistics kind
-- ('linear'|'logistic'), ARGV[9] number of features d, ARGV[10] largest feature magnitude,
-- ARGV[11] this call's marker token (lua/reward_markers.lua)
-- Returns one outcome per reward: apply_rewards.lua's, plus 'stale'.
local stats, pending, log, features = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local guard, sketch = KEYS[5], KEYS[6]
local rule, gamma, maxlen = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local limit, space, kind = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local dim, feature_limit = tonumber(ARGV[9]), tonumber(ARGV[10])
local outcomes = {}
marker_token = ARGV[11]
local head = redis.call('HMGET', stats, '_inc', '_space')
if head[1] ~= ARGV[1] then
  for i = 1, #KEYS - 6 do outcomes[i] = 'gone' end
  return outcomes
end
local current_space = head[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = {}
local applied = 0

local function apply(marker_key, arm, value_s, deadline, learn, ttl, nonce, features_s,
    metrics_s)
  local exists = known[arm]
  if exists == nil then
    exists = redis.call('HEXISTS', stats, arm .. ':n') == 1
    known[arm] = exists
  end
  if not exists then return 'no_arm' end
  local late = now > deadline
  local value = tonumber(value_s)
  if value == nil or value ~= value or value > limit or value < -limit then
    return 'invalid'
  end
  local metrics_part, detail_s = split_metrics(metrics_s)
  metrics_s = metrics_part
  local metrics = parse_metrics(metrics_s, limit)
  if metrics == nil then return 'invalid' end
  local detail = parse_metrics(detail_s, limit)
  if detail == nil then return 'invalid' end
  local f_space, z, x = parse_features(features_s, feature_limit)
  if f_space == nil then return 'invalid' end
  if f_space ~= current_space or f_space ~= space or #x ~= dim then return 'stale' end
  local marker = redis.call('GET', marker_key)
  local function log_event()
    if metrics_s ~= nil and metrics_s ~= '' then
      redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*', 'type', 'reward', 'nonce', nonce,
        'reward', value_s, 'metrics', metrics_s)
    else
      redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*', 'type', 'reward', 'nonce', nonce,
        'reward', value_s)
    end
  end
  if marker then
    local earlier = own_outcome(marker_key, marker)
    if earlier then return earlier end
    if string.sub(marker, 1, 2) == 'd:' and late and rule == 'apply' then
      -- Replace the default credited at the deadline: the real reward's target differs from
      -- the default's by (value - default) for every kind, and A, n do not change.
      local default = tonumber(string.sub(marker, 3))
      mark_rewarded(marker_key, 'late_applied', nil)
      credit_metrics(stats, arm, metrics)
      credit_detail(guard, sketch, arm, detail)
      if learn then
        credit_context(stats, gamma, arm, 0, fmt(value - default),
          fmt(value * value - default * default), x, 0, value - default)
        applied = applied + 1
      end
      log_event()
      return 'late_applied'
    end
    if string.sub(marker, 1, 2) == 'd:' and late then return 'late_ignored' end
    return 'duplicate'
  end
  if late and rule ~= 'apply' then return 'late_ignored' end
  local outcome = 'applied'
  if not learn then outcome = 'recorded' elseif late then outcome = 'late_applied' end
  mark_rewarded(marker_key, outcome, ttl)
  redis.call('ZREM', pending, nonce .. '|' .. arm)
  redis.call('HDEL', features, nonce)
  log_event()
  credit_metrics(stats, arm, metrics)
  credit_detail(guard, sketch, arm, detail)
  if not learn then
    -- Not learned from, but its metrics changed the statistics: bump the version so every
    -- replica's copy (constraint verdicts, metric gauges) follows.
    if #metrics > 0 then applied = applied + 1 end
    return 'recorded'
  end
  local w, target = working(kind, z, value)
  credit_context(stats, gamma, arm, 1, value_s, fmt(value * value), x, w, target)
  applied = applied + 1
  if late then return 'late_applied' end
  return 'applied'
end

local k = 6
for arm, value_s, deadline, learn, ttl, nonce, features_s, metrics_s in
    string.gmatch(ARGV[5],
      '([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)|?([^|;]*);') do
  k = k + 1
  outcomes[k - 6] = apply(KEYS[k], arm, value_s, tonumber(deadline), learn == '1', ttl, nonce,
    features_s, metrics_s)
end
flush_context(stats)
if applied > 0 then redis.call('HINCRBY', stats, '_version', applied) end
return outcomes
