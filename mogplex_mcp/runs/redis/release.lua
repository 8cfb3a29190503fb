-- Give a lease up only if its holder still has it. KEYS[1] the lease; ARGV[1] holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
