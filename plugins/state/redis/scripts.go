package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts of the atomic writes and of the window push-down. Each is sent once per
// server (go-redis's Script runs EVALSHA and falls back to EVAL on NOSCRIPT, which loads it).
//
// Timestamps are 16 hex digits (see tsHex): they compare exactly as strings, which Lua's
// doubles could not do for nanoseconds. Every reply is an array of strings, never a Lua
// number, since Redis would truncate those to integers.

// luaPrelude holds the helpers every write script shares.
const luaPrelude = `
local function nsOf(h)
  return tonumber(string.sub(h, 1, 8), 16) * 4294967296 + tonumber(string.sub(h, 9, 16), 16) - 9223372036854775808
end
-- expireAt makes key expire keepms after the timestamp h (rounded up), deleting it when that
-- is already past.
local function expireAt(key, h, keepms, nowms)
  local at = math.floor(nsOf(h) / 1000000) + keepms + 1
  if at <= nowms then
    redis.call('DEL', key)
    return
  end
  redis.call('PEXPIREAT', key, string.format('%d', at))
end
-- push makes the replaced current value cur (or nothing) version 1, keeping n versions.
local function push(p, cur, n, overms, nowms)
  if n == 0 then
    redis.call('DEL', p)
    return
  end
  if cur then
    redis.call('LPUSH', p, cur)
    redis.call('LTRIM', p, 0, n - 1)
    expireAt(p, string.sub(cur, 2, 17), overms, nowms)
  else
    redis.call('LTRIM', p, 0, n - 1)
  end
end
local function fmt(x) return string.format('%.17g', x) end
`

// luaSet defines setWrite(KEYS, ARGV), the event-time Set: KEYS v, p. ARGV kind, ts, value,
// retainCut, overCut, versions, keepms, overms, nowms. Reply {'a'} (applied) or {'s',
// current ts, kept '1'|'0'} (superseded).
const luaSet = `
local function setWrite(KEYS, ARGV)
local v, p = KEYS[1], KEYS[2]
local kind, ts, n = ARGV[1], ARGV[2], tonumber(ARGV[6])
local keepms, overms, nowms = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local cur = redis.call('GET', v)
if cur and (string.sub(cur, 1, 1) ~= kind or string.sub(cur, 2, 17) <= ARGV[4]) then
  redis.call('DEL', v, p)
  cur = false
end
if cur and ts < string.sub(cur, 2, 17) then
  local curts = string.sub(cur, 2, 17)
  if n == 0 then
    redis.call('DEL', p)
    return {'s', curts, '0'}
  end
  if ts <= ARGV[5] then return {'s', curts, '0'} end
  redis.call('LTRIM', p, 0, n - 1)
  local hist = redis.call('LRANGE', p, 0, -1)
  local m = 0
  while m < #hist and string.sub(hist[m + 1], 2, 17) > ts do m = m + 1 end
  if m >= n then return {'s', curts, '0'} end
  local el = kind .. ts .. ARGV[3]
  if m == #hist then
    redis.call('RPUSH', p, el)
  else
    redis.call('LINSERT', p, 'BEFORE', hist[m + 1], el)
  end
  redis.call('LTRIM', p, 0, n - 1)
  local newest = ts
  if m > 0 then newest = string.sub(hist[1], 2, 17) end
  expireAt(p, newest, overms, nowms)
  return {'s', curts, '1'}
end
push(p, cur, n, overms, nowms)
redis.call('SET', v, kind .. ts .. ARGV[3])
expireAt(v, ts, keepms, nowms)
return {'a'}
end
`

// setScript runs setWrite.
var setScript = goredis.NewScript(luaPrelude + luaSet + `return setWrite(KEYS, ARGV)`)

// luaAppend defines appendWrite(KEYS, ARGV): KEYS v, p. ARGV kind, ts, elements, liveCut,
// versions, keepms, overms, nowms. Reply {ts, list}.
const luaAppend = `
local function appendWrite(KEYS, ARGV)
local v, p = KEYS[1], KEYS[2]
local kind, ts, n = ARGV[1], ARGV[2], tonumber(ARGV[5])
local keepms, overms, nowms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local cur = redis.call('GET', v)
if cur and string.sub(cur, 1, 1) ~= kind then
  redis.call('DEL', v, p)
  cur = false
end
local base, nts = '', ts
if cur and string.sub(cur, 2, 17) > ARGV[4] then
  base = string.sub(cur, 18)
  if string.sub(cur, 2, 17) > ts then nts = string.sub(cur, 2, 17) end
end
local out = base .. ARGV[3]
push(p, cur, n, overms, nowms)
redis.call('SET', v, kind .. nts .. out)
expireAt(v, nts, keepms, nowms)
return {nts, out}
end
`

// appendScript runs appendWrite.
var appendScript = goredis.NewScript(luaPrelude + luaAppend + `return appendWrite(KEYS, ARGV)`)

// incrScript: KEYS v, p, x (scratch). ARGV kind, ts, by, liveCut, versions, keepms, overms,
// nowms, int '1'|'0'. Reply {'a', ts, result} or {'o', current} (overflow: nothing written).
// Ints are added by INCRBY on the scratch key, which is exact over int64 and refuses to
// overflow; floats in Lua, whose numbers are float64.
var incrScript = goredis.NewScript(luaPrelude + `
local v, p, x = KEYS[1], KEYS[2], KEYS[3]
local kind, ts, n = ARGV[1], ARGV[2], tonumber(ARGV[5])
local keepms, overms, nowms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local cur = redis.call('GET', v)
if cur and string.sub(cur, 1, 1) ~= kind then
  redis.call('DEL', v, p)
  cur = false
end
local out, nts = ARGV[3], ts
if cur and string.sub(cur, 2, 17) > ARGV[4] then
  local cv = string.sub(cur, 18)
  if string.sub(cur, 2, 17) > ts then nts = string.sub(cur, 2, 17) end
  if ARGV[9] == '1' then
    redis.call('SET', x, cv)
    local r = redis.pcall('INCRBY', x, ARGV[3])
    if type(r) == 'table' and r.err then
      redis.call('DEL', x)
      return {'o', cv}
    end
    out = redis.call('GET', x)
    redis.call('DEL', x)
  else
    local r = tonumber(cv) + tonumber(ARGV[3])
    if r ~= r or r == math.huge or r == -math.huge then return {'o', cv} end
    out = fmt(r)
  end
end
push(p, cur, n, overms, nowms)
redis.call('SET', v, kind .. nts .. out)
expireAt(v, nts, keepms, nowms)
return {'a', nts, out}
`)

// luaWindowAdd defines windowAdd(KEYS, ARGV): KEYS w. ARGV id, x, updated, first kept id,
// expiry (Unix ms); id, updated and first kept id as idBytes (8 bytes that compare as
// strings as the numbers do). Reply {'a'} or {'o', sum} (the sum would overflow: no bucket
// written).
//
// :w is one string of bucketLen-byte records sorted by ID (see the package doc). A write to
// the newest bucket — nearly every write — is a SETRANGE in place, a new newest bucket an
// APPEND, both O(1); a late write to an older bucket finds it by binary search and a bucket
// inserted in the middle rewrites the string. Expired buckets are always a prefix, cut when
// the first record is older than the first kept ID.
const luaWindowAdd = `
local function windowAdd(KEYS, ARGV)
local R = 48
local w, id, x, upd, keep = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local n = redis.call('STRLEN', w)
if n % R ~= 0 then
  redis.call('DEL', w)
  n = 0
end
if n > 0 and redis.call('GETRANGE', w, 0, 7) < keep then
  local all = redis.call('GET', w)
  local i = 0
  while i < n and string.sub(all, i + 1, i + 8) < keep do i = i + R end
  if i >= n then
    redis.call('DEL', w)
    n = 0
  else
    redis.call('SET', w, string.sub(all, i + 1), 'KEEPTTL')
    n = n - i
  end
end
local pos, ins = -1, n
if n > 0 then
  local lastid = redis.call('GETRANGE', w, n - R, n - R + 7)
  if lastid == id then
    pos = n - R
  elseif lastid > id then
    local all = redis.call('GET', w)
    local lo, hi = 0, n / R
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if string.sub(all, mid * R + 1, mid * R + 8) < id then lo = mid + 1 else hi = mid end
    end
    ins = lo * R
    if ins < n and string.sub(all, ins + 1, ins + 8) == id then pos = ins end
  end
end
local sum, count, mn, mx, u = 0, 0, x, x, upd
if pos >= 0 then
  local rec = redis.call('GETRANGE', w, pos, pos + R - 1)
  sum, count, mn, mx = struct.unpack('<dddd', string.sub(rec, 9, 40))
  local old = string.sub(rec, 41, 48)
  if x < mn then mn = x end
  if x > mx then mx = x end
  if old > u then u = old end
end
local ns = sum + x
if ns == math.huge or ns == -math.huge then return {'o', fmt(sum)} end
local rec = id .. struct.pack('<dddd', ns, count + 1, mn, mx) .. u
if pos >= 0 then
  redis.call('SETRANGE', w, pos, rec)
elseif ins == n then
  redis.call('APPEND', w, rec)
else
  local all = redis.call('GET', w)
  redis.call('SET', w, string.sub(all, 1, ins) .. rec .. string.sub(all, ins + 1), 'KEEPTTL')
end
local t = redis.call('PEXPIRETIME', w)
if t < 0 or t < tonumber(ARGV[5]) then redis.call('PEXPIREAT', w, ARGV[5]) end
return {'a'}
end
`

// windowAddScript runs windowAdd.
var windowAddScript = goredis.NewScript(luaPrelude + luaWindowAdd + `return windowAdd(KEYS, ARGV)`)

// windowAggregateScript: KEYS w. ARGV first, last (idBytes). Merges the buckets in
// [first, last] in ID order, as engine.Bucket.Merge does. Reply {} when there are none, else
// {sum, count, min, max (%.17g, which round-trips), updated (idBytes)}.
var windowAggregateScript = goredis.NewScript(luaPrelude + `
local R = 48
local first, last = ARGV[1], ARGV[2]
local all = redis.call('GET', KEYS[1])
if not all then return {} end
local sum, count, mn, mx, upd, seen = 0, 0, 0, 0, '', false
for i = 1, #all - R + 1, R do
  local id = string.sub(all, i, i + 7)
  if id > last then break end
  if id >= first then
    local s, c, a, z = struct.unpack('<dddd', string.sub(all, i + 8, i + 39))
    if not seen then
      mn, mx, seen = a, z, true
    else
      if a < mn then mn = a end
      if z > mx then mx = z end
    end
    sum = sum + s
    count = count + c
    local u = string.sub(all, i + 40, i + 47)
    if u > upd then upd = u end
  end
end
if not seen then return {} end
return {fmt(sum), fmt(count), fmt(mn), fmt(mx), upd}
`)

// commitStorageScript commits a program invocation's storage with the feature value it
// wrote, in one step (engine.StorageState.CommitStorage): the version check, the write (one
// of the functions above, the same code Set, Append and WindowAdd run), the storage's sets,
// clears and touches, the new version, and the key's expiry.
//
// KEYS s, the mailbox's m, M and k, then the write's keys (v, p for a set or an append; w for
// a window add), then the mailbox index when the commit sends or cancels and the index is
// reachable (not on a Cluster). ARGV base version, new version, now (tsHex), nowms, write
// (empty: none, 's' set, 'a' append, 'w' window add), n, blind ('1': no version check or
// change, and no storage), the write's n ARGV (as its script takes them), the mailbox's part
// (luaMailbox's enqueue: the index member or empty, cancellations, sends), then the sets
// (count, then name and packed value for each), the clears (count, names) and the touches
// (count, then name and new expiry as tsHex for each).
//
// Reply {'c', version} (the version moved: nothing written), {'f', n} (the sends would
// leave n messages in the mailbox, more than it may hold: nothing written), {'o', sum} (the
// window add would overflow: neither the bucket nor the storage written), or {'k', new version, the
// write's own reply…}. The new version is empty when no live value is left: the key is then
// deleted, version and all, as if never written (State.CommitStorage says why versions are
// random tokens).
//
// A field of s is a storage name and its packed value — kind byte, expiry as tsHex (all f:
// never), encoded value — or storageVersion ('#v') and the version. Values expired as of now
// are deleted, and the key expires with its latest value (PEXPIREAT, the millisecond after
// its expiry), or never (PERSIST) when one of them never expires.
var commitStorageScript = goredis.NewScript(luaPrelude + luaSet + luaAppend + luaWindowAdd + luaMailbox + `
local s = KEYS[1]
local blind = ARGV[7] == '1'
local cur = redis.call('HGET', s, '#v') or ''
if cur ~= ARGV[1] and not blind then return {'c', cur} end
local op, n = ARGV[5], tonumber(ARGV[6])
local wr = {}
local i = 8 + n
local idx = false
if ARGV[i] ~= '' then idx = KEYS[#KEYS] end
local limit = tonumber(ARGV[i + 1])
if limit > 0 then
  local h = held(KEYS[3], KEYS[4], i)
  if h > limit then return {'f', string.format('%d', h)} end
end
if op ~= '' then
  local wk, wa = {}, {}
  local last = #KEYS
  if idx then last = last - 1 end
  for j = 5, last do wk[j - 4] = KEYS[j] end
  for j = 1, n do wa[j] = ARGV[7 + j] end
  if op == 's' then
    wr = setWrite(wk, wa)
  elseif op == 'a' then
    wr = appendWrite(wk, wa)
  else
    wr = windowAdd(wk, wa)
    if wr[1] == 'o' then return wr end
  end
end
i = enqueue(KEYS[2], KEYS[3], KEYS[4], idx, i, tonumber(ARGV[4]))
if blind then
  local out = {'k', cur}
  for j = 1, #wr do out[j + 2] = wr[j] end
  return out
end
local m = tonumber(ARGV[i])
if m > 0 then redis.call('HSET', s, unpack(ARGV, i + 1, i + 2 * m)) end
i = i + 1 + 2 * m
m = tonumber(ARGV[i])
if m > 0 then redis.call('HDEL', s, unpack(ARGV, i + 1, i + m)) end
i = i + 1 + m
m = tonumber(ARGV[i])
for j = i + 1, i + 2 * m, 2 do
  local old = redis.call('HGET', s, ARGV[j])
  if old then redis.call('HSET', s, ARGV[j], string.sub(old, 1, 1) .. ARGV[j + 1] .. string.sub(old, 18)) end
end
local all = redis.call('HGETALL', s)
local top, gone = false, {}
for j = 1, #all, 2 do
  if all[j] ~= '#v' then
    local exp = string.sub(all[j + 1], 2, 17)
    if exp <= ARGV[3] then
      gone[#gone + 1] = all[j]
    elseif not top or exp > top then
      top = exp
    end
  end
end
local ver = ARGV[2]
if not top then
  redis.call('DEL', s)
  ver = ''
else
  if #gone > 0 then redis.call('HDEL', s, unpack(gone)) end
  redis.call('HSET', s, '#v', ver)
  if top == 'ffffffffffffffff' then
    redis.call('PERSIST', s)
  else
    -- top's Unix ms, exactly (top is after now, so after 1970): ns = hi·2^32 + lo, and
    -- 2^32 = 4294·10^6 + 967296, which keeps every product below 2^53.
    local hi, lo = tonumber(string.sub(top, 1, 8), 16) - 2147483648, tonumber(string.sub(top, 9, 16), 16)
    local x = hi * 967296 + lo
    local at = hi * 4294 + (x - x % 1000000) / 1000000 + 1
    if at <= tonumber(ARGV[4]) then at = tonumber(ARGV[4]) + 1 end
    redis.call('PEXPIREAT', s, string.format('%d', at))
  end
end
local out = {'k', ver}
for j = 1, #wr do out[j + 2] = wr[j] end
return out
`)

// luaMailbox is the mailbox's Lua (mailbox.go): enqueue applies a commit's cancellations and
// sends, read from ARGV at i (the index member or ”, the most messages the mailbox may hold
// after them — held counts them — or 0, a count of tokens, the tokens, a count of sends,
// then each send's due ms, token and encoding), indexes them — or removes the
// entry of a mailbox its cancellations emptied — when it can reach the index (idx, the key,
// or false on a Cluster), and returns the ARGV index after them; nextOf returns when the
// mailbox next needs attention (Unix ms; 0: at once, whatever the clock that asks; -1: empty).
const luaMailbox = `
local function dropToken(m, M, k, tok)
  local id = redis.call('HGET', k, 't:' .. tok)
  if id then
    redis.call('ZREM', m, id)
    redis.call('HDEL', M, id)
    redis.call('HDEL', k, 't:' .. tok, 'i:' .. id)
  end
end
-- held returns how many messages the mailbox (M, k) would hold, pending and in flight,
-- after enqueue's part at i: a cancellation of a pending token removes one, a send whose
-- token is pending replaces it.
local function held(M, k, i)
  local n = redis.call('HLEN', M) - redis.call('HEXISTS', M, '#n')
  local known = {}
  local function pending(tok)
    local p = known[tok]
    if p ~= nil then return p end
    return redis.call('HEXISTS', k, 't:' .. tok) == 1
  end
  i = i + 2
  local c = tonumber(ARGV[i])
  for j = i + 1, i + c do
    if pending(ARGV[j]) then n = n - 1 end
    known[ARGV[j]] = false
  end
  i = i + 1 + c
  c = tonumber(ARGV[i])
  for j = i + 1, i + 3 * c, 3 do
    local tok = ARGV[j + 1]
    if tok == '' or not pending(tok) then n = n + 1 end
    if tok ~= '' then known[tok] = true end
  end
  return n
end
local function enqueue(m, M, k, idx, i, nowms)
  local member = ARGV[i]
  i = i + 2
  local c = tonumber(ARGV[i])
  for j = i + 1, i + c do dropToken(m, M, k, ARGV[j]) end
  if c > 0 and redis.call('HLEN', M) == 1 then
    -- The cancellations emptied the mailbox (M holds only #n): nothing is left to index.
    redis.call('DEL', M)
    if idx then redis.call('ZREM', idx, member) end
  end
  i = i + 1 + c
  c = tonumber(ARGV[i])
  if c > 0 then
    local nid = math.max((tonumber(redis.call('HGET', M, '#n')) or 0) + 1, nowms * 1024)
    for j = i + 1, i + 3 * c, 3 do
      local id = string.format('%014x', nid)
      nid = nid + 1
      local tok = ARGV[j + 1]
      if tok ~= '' then
        dropToken(m, M, k, tok)
        redis.call('HSET', k, 't:' .. tok, id, 'i:' .. id, tok)
      end
      redis.call('ZADD', m, ARGV[j], id)
      redis.call('HSET', M, id, ARGV[j + 2])
    end
    redis.call('HSET', M, '#n', string.format('%d', nid - 1))
    if idx then
      local at = false
      for j = i + 1, i + 3 * c, 3 do
        local d = tonumber(ARGV[j]) -- 0: at once, whatever the clocks
        if not at or d < at then at = d end
      end
      redis.call('ZADD', idx, 'LT', string.format('%d', at), member)
    end
  end
  return i + 1 + 3 * c
end
-- setIndex sets the mailbox's index entry to next (nextOf), or removes it (-1): exact,
-- where the script can reach the index (not on a Cluster).
local function setIndex(idx, member, next)
  if not idx then return end
  if next < 0 then
    redis.call('ZREM', idx, member)
  else
    redis.call('ZADD', idx, string.format('%d', next), member)
  end
end
local function nextOf(m, f, l, nowms)
  if redis.call('ZCARD', f) > 0 then
    local t = tonumber(redis.call('HGET', l, 'r') or '0')
    local o = redis.call('HGET', l, 'o')
    local e = tonumber(redis.call('HGET', l, 'e') or '0')
    if o and e > t then t = e end
    return t
  end
  local first = redis.call('ZRANGE', m, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return tonumber(first[2])
end
`

// claimScript leases a mailbox (KEYS m, M, k, f, l, and the index when not on a Cluster) to
// ARGV[1] at now ms ARGV[2] for ARGV[3] ms and returns up to ARGV[4] messages: {'y', id,
// encoding, …}, or {'n', next} when another owner holds it, the first in-flight message
// waits out its back-off, or nothing is due. ARGV[5] is the index member.
var claimScript = goredis.NewScript(luaMailbox + `
local m, M, k, f, l = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local idx, member = KEYS[6] or false, ARGV[5]
local owner, now, lease, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function none()
  local nx = nextOf(m, f, l, now)
  if nx < 0 then redis.call('DEL', M, k, l) end
  setIndex(idx, member, nx)
  return {'n', string.format('%d', nx)}
end
local o = redis.call('HGET', l, 'o')
local e = tonumber(redis.call('HGET', l, 'e') or '0')
if o and o ~= owner and e > now then return none() end
local nf = redis.call('ZCARD', f)
local r = tonumber(redis.call('HGET', l, 'r') or '0')
if nf > 0 and r > now then return none() end
if nf < max then
  local due = redis.call('ZRANGEBYSCORE', m, '-inf', now, 'LIMIT', 0, max - nf)
  -- In flight in the order claimed: after those claimed before (a retry), whatever the IDs.
  local seq = 0
  if nf > 0 then seq = tonumber(redis.call('ZRANGE', f, -1, -1, 'WITHSCORES')[2]) end
  for _, id in ipairs(due) do
    redis.call('ZREM', m, id)
    seq = seq + 1
    redis.call('ZADD', f, seq, id)
    local tok = redis.call('HGET', k, 'i:' .. id)
    if tok then
      redis.call('HDEL', k, 'i:' .. id)
      if redis.call('HGET', k, 't:' .. tok) == id then redis.call('HDEL', k, 't:' .. tok) end
    end
  end
end
local ids = redis.call('ZRANGE', f, 0, max - 1)
if #ids == 0 then return none() end
redis.call('HSET', l, 'o', owner, 'e', string.format('%d', now + lease))
redis.call('HDEL', l, 'r')
setIndex(idx, member, now + lease)
local out = {'y'}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', M, id) or ''
end
return out
`)

// releaseScript ends ARGV[1]'s lease of a mailbox (KEYS m, M, k, f, l) at now ms ARGV[2]:
// it removes the delivered messages ARGV[6…], re-encodes the retried one (id ARGV[4],
// encoding ARGV[5]; ” for none) to wait until ARGV[3] ms, and returns nextOf.
var releaseScript = goredis.NewScript(luaMailbox + `
local m, M, k, f, l = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local idx, member = KEYS[6] or false, ARGV[6]
local owner, now = ARGV[1], tonumber(ARGV[2])
for j = 7, #ARGV do
  if redis.call('ZREM', f, ARGV[j]) == 1 then redis.call('HDEL', M, ARGV[j]) end
end
redis.call('HDEL', l, 'r')
if ARGV[4] ~= '' and redis.call('ZSCORE', f, ARGV[4]) then
  redis.call('HSET', M, ARGV[4], ARGV[5])
  redis.call('HSET', l, 'r', ARGV[3])
end
if redis.call('HGET', l, 'o') == owner then redis.call('HDEL', l, 'o', 'e') end
local nx = nextOf(m, f, l, now)
if nx < 0 then redis.call('DEL', M, k, l) end
setIndex(idx, member, nx)
return string.format('%d', nx)
`)

// nextScript returns nextOf of a mailbox (KEYS m, f, l) at now ms ARGV[1].
var nextScript = goredis.NewScript(luaMailbox + `
return string.format('%d', nextOf(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1])))
`)
