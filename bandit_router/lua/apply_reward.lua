-- Credit one reward to one decision, exactly once.
-- Invariant: a decision changes the statistics at most once as a reward (plus, with the APPLY
-- late rule, one correction that replaces its default reward), and every check happens before
-- the first write, so a refused call leaves no marker behind (Redis has no rollback).
-- KEYS[1] stats hash, KEYS[2] dedupe marker of the decision, KEYS[3] pending zset,
-- KEYS[4] decision log stream
-- ARGV[1]: one '|'-separated string (packing one argument costs the caller far less than
--   eleven): incarnation, arm, value, deadline_ms, late_rule ('ignore'|'apply'),
--   learn ('1'|'0'), marker_ttl_ms, gamma, nonce, log max length
-- Returns: 'applied' | 'late_applied' | 'late_ignored' | 'duplicate' | 'recorded' | 'gone' | 'no_arm'
local stats, marker_key, pending = KEYS[1], KEYS[2], KEYS[3]
local a = {}
for field in string.gmatch(ARGV[1], '([^|]+)') do a[#a + 1] = field end
local inc, arm, value_s, deadline = a[1], a[2], a[3], tonumber(a[4])
local rule, learn, ttl, gamma = a[5], a[6] == '1', a[7], tonumber(a[8])
local nonce, maxlen = a[9], a[10]
local member = nonce .. '|' .. arm

if redis.call('HGET', stats, '_inc') ~= inc then return 'gone' end
if redis.call('HEXISTS', stats, arm .. ':n') == 0 then return 'no_arm' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local late = now > deadline
local value = tonumber(value_s)
local marker = redis.call('GET', marker_key)

local function fmt(x) return string.format('%.17g', x) end
local function log_event(kind)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', 'type', kind, 'nonce', nonce, 'reward', value_s)
end

local function add(v_sum, v_sq, dn)
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
  redis.call('HINCRBY', stats, '_version', 1)
end

if marker then
  if string.sub(marker, 1, 2) == 'd:' and late and rule == 'apply' then
    -- Replace the default reward credited at the deadline by the real one.
    local default = tonumber(string.sub(marker, 3))
    redis.call('SET', marker_key, 'r', 'KEEPTTL')
    if learn then add(fmt(value - default), fmt(value * value - default * default), 0) end
    log_event('reward')
    return 'late_applied'
  end
  if string.sub(marker, 1, 2) == 'd:' and late then return 'late_ignored' end
  return 'duplicate'
end
if late and rule ~= 'apply' then return 'late_ignored' end
redis.call('SET', marker_key, 'r', 'PX', ttl)
redis.call('ZREM', pending, member)
log_event('reward')
if not learn then return 'recorded' end
add(value_s, fmt(value * value), 1)
if late then return 'late_applied' end
return 'applied'
