-- Shared prelude of the RedisStore scripts (redis_store.go prepends it to
-- each). Times are integer microseconds; a limit's window is one minute.
-- ARGV[1] is the time to use: empty means Redis TIME, so every guard decides
-- on one clock; a number is a test clock (only a store built with one sends it).
if redis.replicate_commands then redis.replicate_commands() end -- Redis < 5

local PERIOD = 60000000
local MAXWAIT = 1000000000000000 -- about 31 years: waits stay exact integers

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- fmt writes a number without losing digits (tostring keeps only 14).
local function fmt(x)
  return string.format('%.17g', x)
end

-- interval is the GCRA emission interval of n requests per minute.
local function interval(n)
  return math.max(1, math.floor(PERIOD / n))
end

-- gcra evaluates one GCRA step at now for a limit of n per minute:
-- ok, new tat, retry after, reset, remaining.
local function gcra(tat, n)
  local iv = interval(n)
  local base = math.max(tat, now)
  local newtat = base + iv
  local allow = newtat - PERIOD
  if now < allow then
    return false, tat, allow - now, base - now, 0
  end
  local used = newtat - now
  return true, newtat, 0, used, math.floor((PERIOD - used) / iv)
end

-- gcraleft: requests a limit of n would admit at once now, and the time
-- until its budget is full again.
local function gcraleft(tat, n)
  local used = math.max(tat - now, 0)
  return math.min(n, math.max(0, math.floor((PERIOD - used) / interval(n)))), used
end

-- wait is the time the token bucket of capacity c needs to gain missing tokens.
local function wait(missing, c)
  if missing <= 0 then
    return 0
  end
  return math.min(MAXWAIT, math.ceil(missing * PERIOD / c))
end

-- bucket is a key's token bucket as stored: level, level's time, capacity.
local function bucket(v)
  return { tok = tonumber(v[1]), at = tonumber(v[2]), cap = tonumber(v[3]) }
end

-- level brings bucket b up to now under capacity c and returns its level. A
-- first use or a changed limit starts full, less what was spent.
local function level(b, c)
  if b.cap ~= c or b.at == nil then
    local spent = (b.cap or 0) - (b.tok or 0)
    if b.at == nil or spent < 0 then
      spent = 0
    end
    b.tok, b.cap, b.at = c - spent, c, now
  end
  local elapsed = now - b.at
  if elapsed > 0 then
    b.tok = math.min(c, b.tok + c * elapsed / PERIOD)
    b.at = now
  end
  return b.tok
end

-- keepfor makes key k live at least ttl more microseconds (plus a second):
-- state expires only once it equals a fresh one.
local function keepfor(k, ttl)
  local ms = math.ceil(math.min(ttl, MAXWAIT) / 1000) + 1000
  local cur = redis.call('PTTL', k)
  if cur == -1 or (cur >= 0 and cur < ms) then
    redis.call('PEXPIRE', k, ms)
  end
end
