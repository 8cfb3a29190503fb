-- Pause a token's requests on every replica (the upstream said 429); never shortens a longer pause.
-- KEYS[1] the pause key; ARGV[1] milliseconds.
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
