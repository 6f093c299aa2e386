-- renew: extend the leases this guard holds (see RedisStore.renew).
-- KEYS: 1 a lease set, 2 the state hash beside it.
-- ARGV: 1 now, 2 lease time, 3… lease ids.
-- A lease that already ran out (another guard dropped it) is not brought
-- back: XX. Returns how many leases were extended.
local lease = tonumber(ARGV[2])
local exp = fmt(now + lease)
local n = 0
for i = 3, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', exp, ARGV[i])
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000) + 1000)
  keepfor(KEYS[2], lease)
end
return n
