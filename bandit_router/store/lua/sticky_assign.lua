-- Store a unit's sticky assignment unless a valid one is already there.
-- Invariant: a unit's assignment changes only when the stored one expired or names an arm
-- that is no longer active; a replica that decided afresh (its look-up timed out, or two
-- replicas met a new unit at once) gets the stored assignment back and adopts it.
-- KEYS[1] sticky hash
-- ARGV[1] field (incarnation|unit), ARGV[2] value (arm|propensity|expires|flag),
-- ARGV[3] now (unix seconds), ARGV[4] key ttl seconds, ARGV[5] active arms, ','-joined
-- Returns the stored value when it was kept, false when ARGV[2] was written.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local arm, expires = string.match(current, '^([^|]*)|[^|]*|([^|]*)')
  if arm and tonumber(expires) and tonumber(expires) > tonumber(ARGV[3]) then
    for active in string.gmatch(ARGV[5], '[^,]+') do
      if active == arm then return current end
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return false
