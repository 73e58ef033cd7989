-- Shared by the scripts that credit rewards of contextual experiments
-- (apply_context_rewards, apply_context_defaults): the store prepends it to them, so a real
-- and a default reward fold a decision's features into its arm by the same rule.
--
-- Per arm the statistics hash holds, beside the plain <arm>:n|sum|sum_sq,
--   <arm>:A:<i>:<j> (0 <= i <= j < d)  the Gram matrix A = sum w x x^T (upper triangle)
--   <arm>:b:<i>                         the vector b = sum t x
-- (absent fields are 0), and the hash's _space is the experiment's feature space
-- (Experiment.feature_space). A decision's features travel as one string
-- "<space>/<z>/<x_0>:<x_1>:...": its feature space, the linearisation point z = x.theta of
-- the chosen arm under the model that decided (logistic_ts; 0 otherwise) and the vector x,
-- every number in Python's shortest round-trip form, which tonumber reads back exactly.

local function fmt(x) return string.format('%.17g', x) end

-- (space, z, x) of a features string; nil when it is malformed or a value is not a finite
-- number of magnitude <= limit (policies.contextual.FEATURE_MAGNITUDE_LIMIT).
local function parse_features(s, limit)
  if not s then return nil end
  local space, z_s, rest = string.match(s, '^([^/]*)/([^/]*)/(.*)$')
  if not space then return nil end
  local z = tonumber(z_s)
  if z == nil or z ~= z or z > 1e300 or z < -1e300 then return nil end
  local x = {}
  for v in string.gmatch(rest, '[^:]+') do
    local n = tonumber(v)
    if n == nil or n ~= n or n > limit or n < -limit then return nil end
    x[#x + 1] = n
  end
  return space, z, x
end

-- (weight, target) of one observation with reward r: it adds weight x x^T to A and
-- target x to b. Linear models: (1, r). logistic_ts: the second-order expansion of the
-- log-likelihood at z (policies.logistic_ts): h = p (1 - p), target h z + r - p.
local function working(kind, z, r)
  if kind == 'logistic' then
    local p = 1 / (1 + math.exp(-z))
    local h = p * (1 - p)
    return h, h * z + r - p
  end
  return 1, r
end

local function is_statistic(f)
  return f:sub(-2) == ':n' or f:sub(-4) == ':sum' or f:sub(-7) == ':sum_sq'
    or string.find(f, '^[^:]+:[Ab]:') ~= nil
end

-- The A and b fields of the arms a script credits, read once per script call (one HMGET per
-- arm) and written back once (one HSET per arm, by flush_context, which every script that
-- calls credit_context calls before it returns), instead of one HINCRBYFLOAT per field and
-- observation: at d = 16 that was 152 commands per reward, most of a contextual reward's
-- Redis CPU. Each observation still adds to each field in turn, in double precision, and the
-- sums are written in '%.17g', which reads back as the same double: the store holds the bits
-- policies.contextual's update_inplace computes for the same observations in the same order
-- (HINCRBYFLOAT added in long double and printed 17 decimals after the point, which could
-- differ in the last bits). Fields left at 0 stay absent, as before.
local context_cache = {}

-- The cached fields of ``arm``: names and values in the order of store.keys.context_fields
-- (A's upper triangle row by row, then b), and which of them changed.
local function arm_fields(stats, arm, d)
  local c = context_cache[arm]
  if c == nil then
    local names = {}
    for i = 0, d - 1 do
      for j = i, d - 1 do names[#names + 1] = arm .. ':A:' .. i .. ':' .. j end
    end
    for i = 0, d - 1 do names[#names + 1] = arm .. ':b:' .. i end
    local raw = redis.call('HMGET', stats, unpack(names))
    local values = {}
    for k = 1, #names do values[k] = tonumber(raw[k]) or 0 end
    c = {names = names, values = values, dirty = {}, d = d}
    context_cache[arm] = c
  end
  return c
end

-- Write every changed field of every cached arm (one HSET per arm) and forget the cache.
local function flush_context(stats)
  for _, c in pairs(context_cache) do
    local args = {}
    for k in pairs(c.dirty) do
      args[#args + 1] = c.names[k]
      args[#args + 1] = fmt(c.values[k])
    end
    if #args > 0 then redis.call('HSET', stats, unpack(args)) end
  end
  context_cache = {}
end

-- Add ``a`` to cached field ``k``; as HINCRBYFLOAT did, a sum that is not finite is an error
-- (after writing what the script credited until then, as HINCRBYFLOAT's earlier calls had).
local function add_field(stats, c, k, a)
  local v = c.values[k] + a
  if v ~= v or v == math.huge or v == -math.huge then
    flush_context(stats)
    error('increment would produce NaN or Infinity')
  end
  c.values[k] = v
  c.dirty[k] = true
end

-- Add one observation to ``arm``: dn to its count, v_sum and v_sq (strings) to its sums,
-- w x x^T to A and t x to b, in the order of operations of
-- policies.contextual.outer_increment (w (x_i x_j), t x_i), so the store holds the bits a
-- simulation would. Zero increments are skipped (adding 0 changes nothing), which
-- makes one-hot features cheap. With a discount gamma < 1 every arm's statistics are first
-- multiplied by gamma, as the policy's update does.
local function credit_context(stats, gamma, arm, dn, v_sum, v_sq, x, w, t)
  if gamma < 1 then
    flush_context(stats)
    local all = redis.call('HGETALL', stats)
    for i = 1, #all, 2 do
      if is_statistic(all[i]) then
        redis.call('HSET', stats, all[i], fmt(tonumber(all[i + 1]) * gamma))
      end
    end
  end
  if dn ~= 0 then redis.call('HINCRBYFLOAT', stats, arm .. ':n', dn) end
  redis.call('HINCRBYFLOAT', stats, arm .. ':sum', v_sum)
  redis.call('HINCRBYFLOAT', stats, arm .. ':sum_sq', v_sq)
  local d = #x
  if w == 0 and t == 0 then return end
  local c = arm_fields(stats, arm, d)
  if w ~= 0 then
    local k = 0
    for i = 1, d do
      local xi = x[i]
      if xi ~= 0 then
        for j = i, d do
          local a = w * (xi * x[j])
          if a ~= 0 then add_field(stats, c, k + j - i + 1, a) end
        end
      end
      k = k + d - i + 1
    end
  end
  if t ~= 0 then
    local base = d * (d + 1) / 2
    for i = 1, d do
      local v = t * x[i]
      if v ~= 0 then add_field(stats, c, base + i, v) end
    end
  end
end
