-- Extend a lease only if its holder still has it. KEYS[1] the lease; ARGV[1] holder, ARGV[2] lease (ms).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
