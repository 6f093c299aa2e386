-- peek: the budget a request would see now; changes nothing (see
-- RedisStore.Peek).
-- KEYS: the key's state hash when ARGV[5] has 'k', then the global state
-- hash when it has 'g'.
-- ARGV: 1 now, 2 rpm, 3 tpm, 4 global rpm, 5 parts.
-- Returns {limit/remaining/reset requests, limit/remaining/reset tokens}.
local rpm, tpm, grpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local haskey, hasglobal = string.find(ARGV[5], 'k', 1, true) ~= nil, string.find(ARGV[5], 'g', 1, true) ~= nil
local ks, gs
if haskey then
  ks = KEYS[1]
  if hasglobal then gs = KEYS[2] end
elseif hasglobal then
  gs = KEYS[1]
end
local out = { 0, 0, 0, 0, 0, 0 }
if haskey then
  local v = redis.call('HMGET', ks, 'tat', 'tok', 'at', 'cap')
  if rpm > 0 then
    local rem, reset = gcraleft(tonumber(v[1]) or 0, rpm)
    out[1], out[2], out[3] = rpm, rem, reset
  end
  if tpm > 0 then
    local lvl = level(bucket({ v[2], v[3], v[4] }), tpm)
    out[4], out[5], out[6] = tpm, math.max(0, math.floor(lvl)), wait(tpm - lvl, tpm)
  end
end
if hasglobal and rpm == 0 and grpm > 0 then
  local rem, reset = gcraleft(tonumber(redis.call('HGET', gs, 'tat')) or 0, grpm)
  out[1], out[2], out[3] = grpm, rem, reset
end
return out
