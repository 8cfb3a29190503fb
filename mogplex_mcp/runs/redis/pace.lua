-- One token's sliding-window budget, shared by every replica: take a slot, or say how long to wait.
-- KEYS[1] slots taken (sorted set scored by the server's clock, in µs), KEYS[2] the 429 pause.
-- ARGV[1] slots per window, ARGV[2] window (µs), ARGV[3] a unique member, ARGV[4] '1' take, '0' only look.
-- Returns {1, now (µs)} when a slot was taken (or could be), {0, µs to wait} otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused * 1000} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  if ARGV[4] == '1' then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  end
  return {1, now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
