-- Append one update to a run's feed within its budgets. KEYS[1] the feed (a Stream), KEYS[2] the bytes it
-- holds, KEYS[3] the bytes this token published in the current window.
-- ARGV: [1] format version, [2] the entry (JSON), [3] its size in bytes, [4] most entries kept, [5] the feed's
-- TTL (s), [6] most bytes per run, [7] most bytes per token per window, [8] the window (s), [9] "1": a marker
-- that does not count against the token's budget.
-- Returns 1 when appended, 0 when the token's budget for this window is spent (nothing appended).
local size = tonumber(ARGV[3])
if ARGV[9] ~= '1' then
  local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
  if spent + size > tonumber(ARGV[7]) then
    return 0
  end
  redis.call('INCRBY', KEYS[3], size)
  if redis.call('TTL', KEYS[3]) < 0 then
    redis.call('EXPIRE', KEYS[3], ARGV[8])
  end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'v', ARGV[1], 'n', size, 'u', ARGV[2])
local total = redis.call('INCRBY', KEYS[2], size)
local run_max = tonumber(ARGV[6])
-- Over the run's byte budget: drop the oldest entries (exactly, by id) until it fits; the newest always stays.
while total > run_max do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 2)
  if #oldest < 2 then
    redis.call('SET', KEYS[2], size)
    break
  end
  local fields = oldest[1][2]
  local n = 0
  for i = 1, #fields, 2 do
    if fields[i] == 'n' then n = tonumber(fields[i + 1]) or 0 end
  end
  redis.call('XTRIM', KEYS[1], 'MINID', oldest[2][1])
  total = redis.call('DECRBY', KEYS[2], n)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
