-- settle: end an admission (see RedisStore.Finish and Cancel). The lease
-- is removed first, and the rest applies only if it was there: a settlement
-- retried after a lost reply, or one whose lease already ran out, changes
-- nothing.
-- KEYS: as admit's (key part when ARGV[9] has 'k', global part when 'g').
-- ARGV: 1 now, 2 mode ('finish' | 'cancel'), 3 key lease id, 4 global lease
-- id, 5 tokens reserved, 6 tokens used, 7 rpm charged, 8 global rpm charged,
-- 9 parts.
-- Returns {key part applied, global part applied} (1 or 0).
local cancel = ARGV[2] == 'cancel'
local reserved, used, rpm, grpm = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local haskey, hasglobal = string.find(ARGV[9], 'k', 1, true) ~= nil, string.find(ARGV[9], 'g', 1, true) ~= nil
local ks, kl, gs, gl
if haskey then
  ks, kl = KEYS[1], KEYS[2]
  if hasglobal then gs, gl = KEYS[3], KEYS[4] end
elseif hasglobal then
  gs, gl = KEYS[1], KEYS[2]
end

local out = { 0, 0 }
if haskey and redis.call('ZREM', kl, ARGV[3]) == 1 then
  out[1] = 1
  local v = redis.call('HMGET', ks, 'tat', 'tok', 'at', 'cap')
  local b = bucket({ v[2], v[3], v[4] })
  local credit = reserved - used -- a refund, or a debit for an overrun
  if cancel then
    credit = reserved
    local tat = tonumber(v[1])
    if rpm > 0 and tat then
      redis.call('HSET', ks, 'tat', fmt(tat - interval(rpm)))
    end
  end
  if reserved > 0 and b.tok and b.cap and b.at then
    b.tok = math.min(b.tok + credit, b.cap)
    redis.call('HSET', ks, 'tok', fmt(b.tok))
    -- Time until full, counted from the level's own time.
    keepfor(ks, b.at + wait(b.cap - b.tok, b.cap) - now)
  end
end
if hasglobal and redis.call('ZREM', gl, ARGV[4]) == 1 then
  out[2] = 1
  if cancel and grpm > 0 then
    local tat = tonumber(redis.call('HGET', gs, 'tat'))
    if tat then
      redis.call('HSET', gs, 'tat', fmt(tat - interval(grpm)))
    end
  end
end
return out
