-- Remember a run seen with a token: an upsert, newest first, at most ARGV[5] per token, all keys with a TTL.
-- KEYS[1] order (sorted set: run id by first-seen sequence), KEYS[2] details (hash: run id -> JSON),
-- KEYS[3] the sequence. ARGV: run id, title, status, repo id ('' = unchanged), max runs, TTL (s), and the
-- run's known facts as a JSON object (its keys overwrite the stored ones; '' = none).
-- Returns 1 when the run was not known before (the list changed), else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local meta
local new = 0
if raw then
  meta = cjson.decode(raw)
else
  new = 1
  meta = {first_seen = now}
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[3]), ARGV[1])
end
if ARGV[2] ~= '' then meta.title = ARGV[2] end
if ARGV[3] ~= '' then meta.status = ARGV[3] end
if ARGV[4] ~= '' then meta.repo_id = ARGV[4] end
if ARGV[7] and ARGV[7] ~= '' then
  local facts = meta.facts or {}
  for key, value in pairs(cjson.decode(ARGV[7])) do facts[key] = value end
  meta.facts = facts
end
meta.last_seen = now
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(meta))
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if extra > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
  redis.call('HDEL', KEYS[2], unpack(oldest))
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
return new
