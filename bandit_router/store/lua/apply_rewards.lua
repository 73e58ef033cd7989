-- Credit a group commit's rewards of one experiment, each to its decision exactly once.
-- Runs after lua/statistics.lua, lua/metrics.lua and lua/reward_markers.lua (prepended by
-- the store): fmt, credit, parse_metrics, credit_metrics, own_outcome, mark_rewarded.
-- Invariant: a decision changes the statistics at most once as a reward (plus, with the APPLY
-- late rule, one correction that replaces its default reward), and each reward's checks all
-- happen before its first write, so a refused reward leaves no marker behind (Redis has no
-- rollback). Rewards are applied in order, so a retry within the same group is a duplicate.
-- One call per group rather than one per reward: a script call's fixed cost (the caller
-- packing and parsing it, Redis setting up the script) was most of what a reward cost.
-- KEYS[1] stats hash, KEYS[2] pending zset, KEYS[3] decision log stream, KEYS[4] guard hash,
-- KEYS[5] sketch hash (lua/metrics.lua), KEYS[6..] dedupe marker of each reward's decision,
-- in the order of the rewards
-- ARGV[1] incarnation, ARGV[2] late rule ('ignore'|'apply'), ARGV[3] gamma,
-- ARGV[4] log max length, ARGV[5] one string of "arm|value|deadline_ms|learn|marker_ttl_ms|nonce;"
--   per reward (learn: '1'|'0'; one argument, not six per reward: packing them is the cost),
--   with "|name=value,..." after the nonce when the reward carries metrics (lua/metrics.lua)
-- Returns one outcome per reward: 'applied' | 'late_applied' | 'late_ignored' | 'duplicate'
--   | 'recorded' | 'gone' | 'no_arm' | 'invalid' (a value that is not a finite number of
--   magnitude <= ARGV[6]: the caller validates first; this keeps the statistics finite
--   whatever a caller sends, since HINCRBYFLOAT refuses a non-finite result only after the
--   script's earlier writes)
-- ARGV[6] largest accepted reward magnitude (policies.base.REWARD_MAGNITUDE_LIMIT),
-- ARGV[7] this call's marker token (lua/reward_markers.lua)
local stats, pending, log, guard, sketch = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rule, gamma, maxlen = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local limit = tonumber(ARGV[6])
local outcomes = {}
marker_token = ARGV[7]
if redis.call('HGET', stats, '_inc') ~= ARGV[1] then
  for i = 1, #KEYS - 5 do outcomes[i] = 'gone' end
  return outcomes
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = {}
local applied = 0

local function add(arm, v_sum, v_sq, dn)
  credit(stats, gamma, arm, dn, v_sum, v_sq)
  applied = applied + 1
end

local function apply(marker_key, arm, value_s, deadline, learn, ttl, nonce, metrics_s)
  local exists = known[arm]
  if exists == nil then
    exists = redis.call('HEXISTS', stats, arm .. ':n') == 1
    known[arm] = exists
  end
  if not exists then return 'no_arm' end
  local late = now > deadline
  local value = tonumber(value_s)
  -- value ~= value is NaN; the bound also excludes +-inf.
  if value == nil or value ~= value or value > limit or value < -limit then
    return 'invalid'
  end
  local metrics_part, detail_s = split_metrics(metrics_s)
  metrics_s = metrics_part
  local metrics = parse_metrics(metrics_s, limit)
  if metrics == nil then return 'invalid' end
  local detail = parse_metrics(detail_s, limit)
  if detail == nil then return 'invalid' end
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
      -- Replace the default reward credited at the deadline by the real one.
      local default = tonumber(string.sub(marker, 3))
      mark_rewarded(marker_key, 'late_applied', nil)
      credit_metrics(stats, arm, metrics)
      credit_detail(guard, sketch, arm, detail)
      if learn then add(arm, fmt(value - default), fmt(value * value - default * default), 0) end
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
  log_event()
  credit_metrics(stats, arm, metrics)
  credit_detail(guard, sketch, arm, detail)
  if not learn then
    -- Not learned from, but its metrics changed the statistics: bump the version so every
    -- replica's copy (constraint verdicts, metric gauges) follows.
    if #metrics > 0 then applied = applied + 1 end
    return 'recorded'
  end
  add(arm, value_s, fmt(value * value), 1)
  if late then return 'late_applied' end
  return 'applied'
end

local k = 5
for arm, value_s, deadline, learn, ttl, nonce, metrics_s in
    string.gmatch(ARGV[5], '([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)|([^|;]+)|?([^|;]*);') do
  k = k + 1
  outcomes[k - 5] = apply(KEYS[k], arm, value_s, tonumber(deadline), learn == '1', ttl, nonce,
    metrics_s)
end
if applied > 0 then redis.call('HINCRBY', stats, '_version', applied) end
return outcomes
