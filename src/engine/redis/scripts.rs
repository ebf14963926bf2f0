//! The Lua scripts: each is one atomic step in Redis, so offsets, history
//! and live delivery can never disagree, and every instance sees the same
//! offsets.
//!
//! Keys per channel (`P` is the prefix): `P:m:NAME`, a hash with the epoch
//! (`e`), the top offset (`o`) and the history ttl in ms (`t`); `P:s:NAME`,
//! the history stream (entries hold the message in field `m`); `P:p:NAME`,
//! the presence set (members scored by expiry, ms); `P:i:NAME:KEY`, an
//! idempotency key. The pub/sub channel is `P:c:NAME`.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: meta, stream, idempotency key (a dummy when unused).
/// ARGV: pub/sub channel, kind, data, history size, history ttl ms, a new
/// epoch (used if the channel has none), origin, use-idempotency (0/1),
/// idempotency ttl ms, meta ttl ms.
/// Returns {offset, epoch, duplicate (0/1)}.
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
if ARGV[8] == '1' then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    local colon = string.find(prev, ':', 1, true)
    return {tonumber(string.sub(prev, 1, colon - 1)), string.sub(prev, colon + 1), 1}
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local msg = 'P' .. string.format('%d', offset) .. ':' .. string.format('%d', ms) .. ':' ..
  ARGV[2] .. ':' .. epoch .. ':' .. ARGV[7] .. ':' .. ARGV[3]
local size = tonumber(ARGV[4])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, '*', 'm', msg)
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', ms - tonumber(ARGV[5])))
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  redis.call('HSET', KEYS[1], 't', ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[10])
if ARGV[8] == '1' then
  redis.call('SET', KEYS[3], string.format('%d', offset) .. ':' .. epoch, 'PX', ARGV[9])
end
redis.call('PUBLISH', ARGV[1], msg)
return {offset, epoch, 0}
"#,
    )
});

/// KEYS: meta, stream. ARGV: mode (`last` or `since`), n (last) or the
/// offset (since), limit (since; 0 = none).
/// Returns {epoch or '', top, complete (0/1), messages oldest first...}:
/// for `since`, complete means the messages are everything after the
/// offset (else none are returned).
pub static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then return {'', 0, 0} end
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local ttl = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if ttl > 0 then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', ms - ttl))
end
local kept = redis.call('XLEN', KEYS[2])
local want
local complete = 1
if ARGV[1] == 'last' then
  want = math.min(tonumber(ARGV[2]), kept)
else
  want = top - tonumber(ARGV[2])
  local limit = tonumber(ARGV[3])
  if want < 0 or want > kept or (limit > 0 and want > limit) then
    return {epoch, top, 0}
  end
end
local out = {epoch, top, complete}
if want > 0 then
  local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want)
  for i = #entries, 1, -1 do
    out[#out + 1] = entries[i][2][2]
  end
end
return out
"#,
    )
});

/// KEYS: presence set. ARGV: now ms, pub/sub channel.
/// Drops members whose expiry passed (an instance that died stopped
/// refreshing them), tells subscribers they left, and returns the rest.
pub static PRESENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  for _, m in ipairs(gone) do
    redis.call('PUBLISH', ARGV[2], 'L' .. m)
  end
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
"#,
    )
});

/// KEYS: presence set. ARGV: expiry ms, member, pub/sub channel, ttl ms.
/// Adds a member and tells subscribers.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[3], 'J' .. ARGV[2])
return 1
"#,
    )
});

/// KEYS: presence set. ARGV: member, pub/sub channel.
/// Removes a member and, if it was there, tells subscribers.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[2], 'L' .. ARGV[1])
end
return 1
"#,
    )
});
