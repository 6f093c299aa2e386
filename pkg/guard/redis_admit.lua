-- admit: take every limit that applies, or none (see RedisStore.Admit).
-- KEYS: the key's state hash and lease set when ARGV[11] has 'k', then the
-- global state hash and lease set when it has 'g'.
-- ARGV: 1 now, 2 lease time, 3 rpm, 4 tpm, 5 concurrency, 6 tokens to
-- reserve, 7 key lease id ('' none), 8 global rpm, 9 global concurrency,
-- 10 global lease id ('' none), 11 parts.
-- Returns {allowed, reason, retry after, limit/remaining/reset requests,
-- limit/remaining/reset tokens}; times in microseconds.
local lease = tonumber(ARGV[2])
local rpm, tpm, conc, tokens = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local klease, grpm, gconc, glease = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
local haskey, hasglobal = string.find(ARGV[11], 'k', 1, true) ~= nil, string.find(ARGV[11], 'g', 1, true) ~= nil
local ks, kl, gs, gl
if haskey then
  ks, kl = KEYS[1], KEYS[2]
  if hasglobal then gs, gl = KEYS[3], KEYS[4] end
elseif hasglobal then
  gs, gl = KEYS[1], KEYS[2]
end

local lreq, rreq, sreq, ltok, rtok, stok = 0, 0, 0, 0, 0, 0
local function refuse(reason, retry)
  return { 0, reason, retry, lreq, rreq, sreq, ltok, rtok, stok }
end

-- Evaluate every limit first; write only if all pass.
local tat, b = 0, nil
if haskey then
  local v = redis.call('HMGET', ks, 'tat', 'tok', 'at', 'cap')
  tat = tonumber(v[1]) or 0
  b = bucket({ v[2], v[3], v[4] })
end
local lvl
if haskey and tpm > 0 then
  lvl = level(b, tpm)
  ltok, rtok, stok = tpm, math.max(0, math.floor(lvl)), wait(tpm - lvl, tpm)
  -- A reservation that can never fit is refused as such first, whatever
  -- else is exhausted now: a 429 would make SDKs retry it for nothing.
  if tokens > tpm then
    return refuse('request_too_large', 0)
  end
end
local ktat, gtat
if haskey and rpm > 0 then
  local ok, nt, retry, reset, rem = gcra(tat, rpm)
  lreq, rreq, sreq = rpm, rem, reset
  if not ok then
    return refuse('rpm', retry)
  end
  ktat = nt
end
if hasglobal and grpm > 0 then
  local ok, nt, retry, reset, rem = gcra(tonumber(redis.call('HGET', gs, 'tat')) or 0, grpm)
  if rpm == 0 then
    lreq, rreq, sreq = grpm, rem, reset
  end
  if not ok then
    return refuse('global_rpm', retry)
  end
  gtat = nt
end
if haskey and tpm > 0 and lvl < tokens then
  return refuse('tpm', wait(tokens - lvl, tpm))
end
-- A concurrency slot is a lease: expired ones (their guard died) go first.
if haskey and conc > 0 then
  redis.call('ZREMRANGEBYSCORE', kl, '-inf', now)
  if redis.call('ZCARD', kl) >= conc then
    return refuse('concurrency', 1000000)
  end
end
if hasglobal and gconc > 0 then
  redis.call('ZREMRANGEBYSCORE', gl, '-inf', now)
  if redis.call('ZCARD', gl) >= gconc then
    return refuse('global_concurrency', 1000000)
  end
end

-- Commit.
if haskey then
  local ttl = 0
  if ktat then
    redis.call('HSET', ks, 'tat', fmt(ktat))
    ttl = ktat - now
  end
  if tpm > 0 then
    b.tok = b.tok - tokens
    redis.call('HSET', ks, 'tok', fmt(b.tok), 'at', fmt(b.at), 'cap', fmt(b.cap))
    rtok, stok = math.max(0, math.floor(b.tok)), wait(tpm - b.tok, tpm)
    ttl = math.max(ttl, stok)
  end
  if klease ~= '' then
    if conc == 0 then
      redis.call('ZREMRANGEBYSCORE', kl, '-inf', now)
    end
    redis.call('ZADD', kl, fmt(now + lease), klease)
    redis.call('PEXPIRE', kl, math.ceil(lease / 1000) + 1000)
    -- The state outlives the lease, so that its settlement finds it.
    ttl = math.max(ttl, lease)
  end
  keepfor(ks, ttl)
end
if hasglobal then
  if gtat then
    redis.call('HSET', gs, 'tat', fmt(gtat))
    keepfor(gs, gtat - now)
  end
  if glease ~= '' then
    if gconc == 0 then
      redis.call('ZREMRANGEBYSCORE', gl, '-inf', now)
    end
    redis.call('ZADD', gl, fmt(now + lease), glease)
    redis.call('PEXPIRE', gl, math.ceil(lease / 1000) + 1000)
    if redis.call('EXISTS', gs) == 1 then
      keepfor(gs, lease)
    end
  end
end
return { 1, '', 0, lreq, rreq, sreq, ltok, rtok, stok }
