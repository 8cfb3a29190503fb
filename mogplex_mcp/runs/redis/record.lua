-- Attach the run a claimed start produced; it expires with its claim. KEYS[1] the claim, KEYS[2] its run.
-- ARGV[1] the run id. Returns 1 when recorded, 0 when the claim is gone (expired or forgotten).
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
  return 1
end
return 0
