-- Shared by the reward scripts (apply_rewards, apply_context_rewards): a decision's dedupe
-- marker once a real reward is credited is 'r' followed by the crediting call's token (8
-- characters, unique per call) and its outcome ('a' applied, 'l' late_applied, 'c'
-- recorded). The Redis client resends a call whose reply timed out, and the resent call
-- must answer what the first one did rather than 'duplicate': the reward was credited once,
-- by this very call. A reward listed twice in one call is still a duplicate the second time.
-- A marker of an older version ('r') or of another call is a duplicate.
-- The script sets marker_token from its arguments before crediting anything.

local marker_token = ''
local marked_now = {}
local MARKED_OUTCOMES = {a = 'applied', l = 'late_applied', c = 'recorded'}
local MARKER_CODES = {applied = 'a', late_applied = 'l', recorded = 'c'}

-- The outcome this call already had for the decision, when the marker is its own from an
-- earlier run of this same call; nil otherwise (then it is a duplicate, or a default).
local function own_outcome(marker_key, marker)
  if marked_now[marker_key] then return nil end
  marked_now[marker_key] = true
  local n = #marker_token
  if n > 0 and #marker == n + 2 and string.sub(marker, 2, n + 1) == marker_token then
    return MARKED_OUTCOMES[string.sub(marker, -1)]
  end
  return nil
end

-- Set the marker of a real reward credited now, with this call's token and outcome.
local function mark_rewarded(marker_key, outcome, ttl)
  marked_now[marker_key] = true
  local value = 'r' .. marker_token .. MARKER_CODES[outcome]
  if ttl then
    redis.call('SET', marker_key, value, 'PX', ttl)
  else
    redis.call('SET', marker_key, value, 'KEEPTTL')
  end
end

