-- Shared by the reward scripts (apply_rewards, apply_context_rewards): a reward's named
-- metrics, "name=value,..." (validated by the caller, checked again here before any write),
-- added to its arm's per-metric sufficient statistics <arm>:m:<name>:count, :total and
-- :squares. They are added when the decision's real reward is first recorded (the same
-- dedupe marker as the reward, so exactly once) and never discounted: they describe what was
-- observed; gamma forgets only what the policy learns from.
-- After a '#', the caller adds what the metrics feed besides (model.observations):
--   "g:<epoch>:<slot>:<rule>=y" a guardrail rule's observation y in [0, 1], added to the
--     guard hash as <arm>:<epoch>:<slot>:<rule>:n (+1) and :s (+y): the windowed statistics
--     the guardrail monitor reads (only the arm's current epoch and recent slots count);
--   "h:<metric>:<bucket>=1" one value of a continuous metric in a log-bucket histogram (the
--     quantile sketch of reports), added to the sketch hash as <arm>:<metric>:<bucket>.
-- The decision log keeps only the metrics themselves.

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

-- (metrics part, detail part) of a reward's metrics argument.
local function split_metrics(metrics_s)
  if metrics_s == nil or metrics_s == '' then return '', '' end
  local cut = string.find(metrics_s, '#', 1, true)
  if cut == nil then return metrics_s, '' end
  return string.sub(metrics_s, 1, cut - 1), string.sub(metrics_s, cut + 1)
end

local function credit_metrics(stats, arm, parsed)
  for _, m in ipairs(parsed) do
    local prefix = arm .. ':m:' .. m[1]
    redis.call('HINCRBYFLOAT', stats, prefix .. ':count', 1)
    redis.call('HINCRBYFLOAT', stats, prefix .. ':total', m[2])
    redis.call('HINCRBYFLOAT', stats, prefix .. ':squares', string.format('%.17g', m[3] * m[3]))
  end
end

local function credit_detail(guard, sketch, arm, parsed)
  for _, d in ipairs(parsed) do
    local kind, field = string.sub(d[1], 1, 2), string.sub(d[1], 3)
    if kind == 'g:' then
      redis.call('HINCRBY', guard, arm .. ':' .. field .. ':n', 1)
      redis.call('HINCRBYFLOAT', guard, arm .. ':' .. field .. ':s', d[2])
    elseif kind == 'h:' then
      redis.call('HINCRBY', sketch, arm .. ':' .. field, 1)
    end
  end
end
