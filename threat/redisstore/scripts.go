package redisstore

// addSource scores and bans in one atomic step, mirroring
// threat.MemoryStore.Add key by key.
//
// KEYS: score1, ban1, score2, ban2, ... (one pair per subject part)
// ARGV: delta, threshold (0: never ban), window ms (> 0), ban ms
// Returns {highest total, longest remaining ban in ms (0: none)}.
//
// The window starts with the key's first score: PEXPIRE only when the key has
// no expiry yet (what PEXPIRE NX does on Redis 7, written so that Redis 6
// runs it too). A score never goes below zero, and a live ban is neither
// extended nor renewed.
const addSource = `
local delta = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local banfor = tonumber(ARGV[4])
local top = 0
local longest = 0
for i = 1, #KEYS, 2 do
  local total = redis.call('INCRBY', KEYS[i], delta)
  if total < 0 then
    redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    total = 0
  end
  if redis.call('PTTL', KEYS[i]) < 0 then
    redis.call('PEXPIRE', KEYS[i], window)
  end
  if total > top then top = total end
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ttl <= 0 and delta > 0 and threshold > 0 and banfor > 0 and total >= threshold then
    redis.call('SET', KEYS[i + 1], '1', 'PX', banfor)
    ttl = banfor
  end
  if ttl > longest then longest = ttl end
end
return {top, longest}
`

// bannedSource returns the longest remaining ban among KEYS in ms, or 0.
const bannedSource = `
local longest = 0
for i = 1, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl > longest then longest = ttl end
end
return longest
`
