//! The Lua scripts the event log runs: each checks and writes one board's
//! keys atomically, and publishes the change notification.

/// The last version in the stream KEYS[1] (entry ids are `<version>-0`),
/// 0 for an empty stream, as a Lua expression.
pub(super) const STREAM_VERSION_LUA: &str = "(function() \
    local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1) \
    if #last > 0 then return tonumber(string.match(last[1][1], '^(%d+)')) end \
    return 0 end)()";

/// Puts back events a stream lost, if it is still at the version the
/// caller saw, and tells the board's watchers. KEYS[1] stream; ARGV: last
/// version seen, changes channel, then six fields per event (version, v,
/// type, actor, at, data).
pub(super) const RESTORE_SCRIPT: &str = r#"
local version = STREAM_VERSION
if version ~= tonumber(ARGV[1]) then return 'moved' end
for i = 3, #ARGV, 6 do
  redis.call('XADD', KEYS[1], ARGV[i] .. '-0', 'v', ARGV[i + 1], 'type', ARGV[i + 2],
    'version', ARGV[i], 'actor', ARGV[i + 3], 'at', ARGV[i + 4], 'data', ARGV[i + 5])
  version = tonumber(ARGV[i])
end
redis.call(PUBLISH, ARGV[2], tostring(version))
return 'restored'
"#;

/// Checks the expected version and appends in one atomic step; also stores
/// the idempotent result next to the board and publishes the new version on
/// the board's channel. Returns `{kind, value}`. Every key is the board's
/// (one hash slot); without an idempotency key KEYS[2] is still a board key,
/// unused (ARGV[12] = '0'), since an empty key name would hash to slot 0.
///
/// Fairness: a writer that keeps losing races asks for the board's turn
/// (`claim`); while another writer holds the turn, appends are refused as
/// conflicts, so the starved writer gets through. A turn lasts at most
/// `turn_ms`, in case its holder goes away.
///
/// A replay rewrites the stored record when replicas must acknowledge
/// (ARGV[14] = '1'): `WAIT` counts a connection's own writes, so this makes
/// the `WAIT` behind the script cover the first write too.
pub(super) const APPEND_SCRIPT: &str = r#"
-- KEYS[1] stream, KEYS[2] idempotency key, KEYS[3] turn
-- ARGV: expected version, schema v, type, actor, at, data, record,
--       ttl seconds, writer token, claim ('1' or '0'), turn ms,
--       idempotent ('1' or '0'), changes channel, touch replay ('1' or '0')
local idempotent = ARGV[12] == '1'
if idempotent then
  local stored = redis.call('GET', KEYS[2])
  if stored then
    if ARGV[14] == '1' then redis.call('SET', KEYS[2], stored, 'KEEPTTL') end
    return {'replay', stored}
  end
end
local current = STREAM_VERSION
local turn = redis.call('GET', KEYS[3])
if (turn and turn ~= ARGV[9]) or current ~= tonumber(ARGV[1]) then
  if ARGV[10] == '1' and not turn then
    redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[11])
  end
  return {'conflict', tostring(current)}
end
local version = current + 1
local id = redis.call('XADD', KEYS[1], version .. '-0',
  'v', ARGV[2], 'type', ARGV[3], 'version', version,
  'actor', ARGV[4], 'at', ARGV[5], 'data', ARGV[6])
if idempotent then redis.call('SET', KEYS[2], ARGV[7], 'EX', ARGV[8]) end
if turn then redis.call('DEL', KEYS[3]) end
redis.call(PUBLISH, ARGV[13], tostring(version))
return {'stored', id}
"#;

/// The stored first result of an idempotent write, rewritten (same value,
/// same expiry) so that a `WAIT` behind it covers the first write.
pub(super) const IDEMPOTENT_RESULT_SCRIPT: &str = r#"
local stored = redis.call('GET', KEYS[1])
if stored then redis.call('SET', KEYS[1], stored, 'KEEPTTL') end
return stored
"#;

/// Appends several events of one board in one step (group commit: the
/// writes that queued behind one board's lock). Everything is checked
/// first (stored idempotent results, the turn, the version), then every
/// event is appended, so a refusal writes nothing. Returns `{kind, ...}`:
/// `stored` and each entry id, `conflict` and the current version, or
/// `replay` (some key was used before: the writes go one by one instead).
pub(super) const APPEND_BATCH_SCRIPT: &str = r#"
-- KEYS[1] stream, KEYS[2] turn, KEYS[2 + i] event i's idempotency key
-- ARGV: expected version, changes channel, ttl seconds, writer token,
--       then per event: schema v, type, actor, at, data, record,
--       idempotent ('1' or '0')
local n = #KEYS - 2
for i = 1, n do
  local at = 4 + (i - 1) * 7
  if ARGV[at + 7] == '1' and redis.call('EXISTS', KEYS[2 + i]) == 1 then return {'replay'} end
end
local current = STREAM_VERSION
local turn = redis.call('GET', KEYS[2])
if (turn and turn ~= ARGV[4]) or current ~= tonumber(ARGV[1]) then
  return {'conflict', tostring(current)}
end
local reply = {'stored'}
for i = 1, n do
  local at = 4 + (i - 1) * 7
  local version = current + i
  reply[i + 1] = redis.call('XADD', KEYS[1], version .. '-0',
    'v', ARGV[at + 1], 'type', ARGV[at + 2], 'version', version,
    'actor', ARGV[at + 3], 'at', ARGV[at + 4], 'data', ARGV[at + 5])
  if ARGV[at + 7] == '1' then redis.call('SET', KEYS[2 + i], ARGV[at + 6], 'EX', ARGV[3]) end
end
if turn then redis.call('DEL', KEYS[2]) end
redis.call(PUBLISH, ARGV[2], tostring(current + n))
return reply
"#;
