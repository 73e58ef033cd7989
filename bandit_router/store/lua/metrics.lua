-- Shared by the reward scripts (apply_rewards, apply_context_rewards): a reward's named
-- metrics, "name=value,..." (validated by the caller, checked again here before any write),
-- added to its arm's per-metric sufficient statistics <arm>:m:<name>:count, :total and
-- :squares. They are added when the decision's real reward is first recorded (the same
-- dedupe marker as the reward, so exactly once) and never discounted: they describe what was
-- observed; gamma forgets only what the policy learns from.

local function parse_metrics(metrics_s, limit)
  local parsed = {}
  if metrics_s == nil or metrics_s == '' then return parsed end
  for name, value_s in string.gmatch(metrics_s, '([^=,]+)=([^=,]+)') do
    local v = tonumber(value_s)
    if v == nil or v ~= v or v > limit or v < -limit then return nil end
    parsed[#parsed + 1] = {name, value_s, v}
  end
  return parsed
end

local function credit_metrics(stats, arm, parsed)
  for _, m in ipairs(parsed) do
    local prefix = arm .. ':m:' .. m[1]
    redis.call('HINCRBYFLOAT', stats, prefix .. ':count', 1)
    redis.call('HINCRBYFLOAT', stats, prefix .. ':total', m[2])
    redis.call('HINCRBYFLOAT', stats, prefix .. ':squares', string.format('%.17g', m[3] * m[3]))
  end
end
