-- Claim the Idempotency-Key of a start: SET NX with the dedupe window as TTL, or answer the key already held.
-- KEYS[1] the claim (holds the key), KEYS[2] the run it produced; ARGV[1] a fresh key, ARGV[2] the window (ms).
-- Returns {1, key, ttl, ''} for a fresh claim, {0, key, ttl left (ms), run id or ''} for an earlier one.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return {1, ARGV[1], tonumber(ARGV[2]), ''}
end
local run = redis.call('GET', KEYS[2]) or ''
return {0, redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), run}
