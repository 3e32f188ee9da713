#include "redis/context.hpp"

namespace crier::redis {

namespace {

// KEYS: stream, seen key. ARGV: ttl ms, max length (0: none), then the fields.
// An id stored within the ttl is not stored again: its first entry's id is the answer.
constexpr const char* kPublish = R"lua(
local id = redis.call('GET', KEYS[2])
if id then return id end
local args = {KEYS[1]}
if ARGV[2] ~= '0' then
  args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = ARGV[2]
end
args[#args + 1] = '*'
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
id = redis.call('XADD', unpack(args))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return id
)lua";

// KEYS: stream, dlq stream, ids hash, id counter, attempts hash, settled hash, done key.
// ARGV: group, entry id, attempts field, settled field, now ms, then the letter's fields.
// The letter is written and the entry acknowledged in one step; sent again (a lost reply),
// it answers the letter already written.
constexpr const char* kDeadLetter = R"lua(
local prev = redis.call('GET', KEYS[7])
if prev then return tonumber(prev) end
local n = redis.call('INCR', KEYS[4])
local f = {KEYS[2], '*', 'crier_dead_letter_id', tostring(n)}
for i = 6, #ARGV do f[#f + 1] = ARGV[i] end
local eid = redis.call('XADD', unpack(f))
redis.call('HSET', KEYS[3], n, KEYS[2] .. ' ' .. eid)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[3])
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
redis.call('SET', KEYS[7], n, 'PX', 86400000)
return n
)lua";

// KEYS: dlq stream, ids hash, redrive stream. ARGV: letter's entry id, letter id, then the
// fields to send back (none: a purge). 0 when the letter was gone already.
constexpr const char* kSendBack = R"lua(
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
if #ARGV > 2 then
  local f = {KEYS[3], '*'}
  for i = 3, #ARGV do f[#f + 1] = ARGV[i] end
  redis.call('XADD', unpack(f))
end
return 1
)lua";

// KEYS: stream. ARGV: group, consumer, idle ms, then entry ids. Sets the idle time of those
// entries still pending for this consumer (another may have claimed one meanwhile: it is
// left alone). Idle 0 renews the hold; idle past the visibility timeout hands the entry
// back, for any consumer's next XAUTOCLAIM.
constexpr const char* kTouch = R"lua(
local mine = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    mine = mine + 1
  end
end
return mine
)lua";

// KEYS: turn key. ARGV: consumer, ttl ms. 1 when the turn is (still) this consumer's.
constexpr const char* kTurn = R"lua(
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua";

constexpr const char* kGiveTurn = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
)lua";

}  // namespace

void load_scripts(Context& ctx) {
  Scripts& s = ctx.scripts;
  s.publish.source = kPublish;
  s.dead_letter.source = kDeadLetter;
  s.send_back.source = kSendBack;
  s.touch.source = kTouch;
  s.turn.source = kTurn;
  s.give_turn.source = kGiveTurn;
  for (Script* script : {&s.publish, &s.dead_letter, &s.send_back, &s.touch, &s.turn, &s.give_turn})
    ctx.conn->load(*script);
}

std::map<std::string, Reply> map_of(const Reply& flat) {
  std::map<std::string, Reply> out;
  for (std::size_t i = 0; i + 1 < flat.elements.size(); i += 2) out.emplace(flat.elements[i].str, flat.elements[i + 1]);
  return out;
}

Fields fields_of_reply(const Reply& flat) { return fields_of_reply(Reply(flat)); }

Fields fields_of_reply(Reply&& flat) {
  Fields out;
  out.reserve(flat.elements.size() / 2);
  for (std::size_t i = 0; i + 1 < flat.elements.size(); i += 2)
    out.emplace_back(std::move(flat.elements[i].str), std::move(flat.elements[i + 1].str));
  return out;
}

std::optional<GroupInfo> group_info(const Reply& xinfo_groups, std::string_view group) {
  for (const Reply& g : xinfo_groups.elements) {
    auto m = map_of(g);
    if (m["name"].str != group) continue;
    GroupInfo info;
    info.pending = static_cast<std::uint64_t>(m["pending"].as_integer());
    info.last_delivered = m["last-delivered-id"].str;
    if (auto lag = m.find("lag"); lag != m.end() && lag->second.kind == Reply::Kind::integer) {
      info.lag_known = true;
      info.lag = static_cast<std::uint64_t>(lag->second.integer);
    }
    if (auto read = m.find("entries-read");
        read != m.end() && read->second.kind == Reply::Kind::integer && read->second.integer >= 0)
      info.entries_read = static_cast<std::uint64_t>(read->second.integer);
    return info;
  }
  return std::nullopt;
}

}  // namespace crier::redis
