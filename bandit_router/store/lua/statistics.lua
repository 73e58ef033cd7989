-- Shared by the scripts that credit rewards (apply_rewards, apply_defaults): the store
-- prepends it to them (store._script_text), so a real and a default reward update the
-- statistics by the same rule, the policy's (discounted) update.

local function fmt(x) return string.format('%.17g', x) end

-- Add one observation to ``arm``'s statistics: ``dn`` to its count (0 for a correction that
-- replaces an earlier value), ``v_sum`` and ``v_sq`` (strings) to its sums. With a discount
-- gamma < 1 every arm's statistics are first multiplied by gamma, as the policy's update does.
local function credit(stats, gamma, arm, dn, v_sum, v_sq)
  if gamma < 1 then
    local all = redis.call('HGETALL', stats)
    for i = 1, #all, 2 do
      local f = all[i]
      if f:sub(-2) == ':n' or f:sub(-4) == ':sum' or f:sub(-7) == ':sum_sq' then
        redis.call('HSET', stats, f, fmt(tonumber(all[i + 1]) * gamma))
      end
    end
  end
  if dn ~= 0 then redis.call('HINCRBYFLOAT', stats, arm .. ':n', dn) end
  redis.call('HINCRBYFLOAT', stats, arm .. ':sum', v_sum)
  redis.call('HINCRBYFLOAT', stats, arm .. ':sum_sq', v_sq)
end
