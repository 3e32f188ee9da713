// What the Redis transport's parts share: the connection, the keys, the Lua scripts.
//
//   <prefix>:<type>                     stream: the events of one type; a group per subscriber
//   <prefix>:_redrive:<sub>:<type>      stream: dead letters sent back to one subscriber
//   <prefix>:_dlq:<sub>:<type>          stream: dead letters, the failure as crier_* fields
//   <prefix>:_dlq_ids                   hash: dead letter id -> "<dlq key> <entry id>"
//   <prefix>:_dlq_seq                   counter: the last dead letter id
//   <prefix>:_dlq_done:<sub>:<type>:<stream>:<entry>  the letter an entry became (a day)
//   <prefix>:_attempts:<sub>:<type>     hash: "<m|r>:<entry id>" -> failed attempts (JSON)
//   <prefix>:_turn:<sub>:<type>         string: the consumer whose turn it is (ordered)
//   <prefix>:_types                     set: event types published
//   <prefix>:_subscribers               set: "<sub> <type>" of every consumer group
//   <prefix>:_settled                   hash: "<sub> <type>" -> when one last finished (ms)
//   <prefix>:_seen:<event id>           string: the entry an event id was stored as (dedup)
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <crier/transport.hpp>

#include "common/attempts_record.hpp"
#include "redis/connection.hpp"
#include "redis/fields.hpp"

namespace crier::redis {

/// Entries per XRANGE or XREVRANGE while walking a stream.
constexpr std::size_t kWalkPage = 1000;

struct Scripts {
  Script publish;      // guarded XADD: stored once per event id
  Script dead_letter;  // the letter written and the entry acknowledged, at once
  Script send_back;    // a letter moved to its subscriber's redrive stream
  Script touch;        // held entries' idle time renewed (or handed back), if still ours
  Script turn;         // an ordered subscriber's turn taken or renewed
  Script give_turn;    // ... given up
};

class UnreadCounter;

struct Context {
  std::shared_ptr<Connection> conn;
  std::string prefix;
  Scripts scripts;
  std::shared_ptr<UnreadCounter> unread;  // the inspector's and the consumers' counts, shared

  const Options& options() const noexcept { return conn->options(); }
  std::string stream_key(std::string_view type) const { return prefix + ":" + std::string(type); }
  std::string named(std::string_view kind, std::string_view sub, std::string_view type) const {
    return prefix + ":_" + std::string(kind) + ":" + std::string(sub) + ":" + std::string(type);
  }
  std::string key(std::string_view kind) const { return prefix + ":_" + std::string(kind); }
};

/// Loads the scripts into `ctx.scripts`.
void load_scripts(Context& ctx);

/// A flat [name, value, name, value...] reply (XINFO, an entry's fields) by name.
std::map<std::string, Reply> map_of(const Reply& flat);
/// An entry's fields, from its [name, value, ...] reply.
Fields fields_of_reply(const Reply& flat);
/// The same, moved out of the reply.
Fields fields_of_reply(Reply&& flat);

/// The group `group` of stream `key` as XINFO GROUPS tells it; nullopt when there is none.
struct GroupInfo {
  std::uint64_t pending = 0;
  std::string last_delivered{};
  bool lag_known = false;  ///< Redis cannot tell the lag after entries were deleted mid-stream
  std::uint64_t lag = 0;
  /// Entries the group has read in the stream's life (Redis 7's entries-read); unknown after
  /// the group's position was set to an arbitrary entry.
  std::optional<std::uint64_t> entries_read;
};
std::optional<GroupInfo> group_info(const Reply& xinfo_groups, std::string_view group);

using crier::detail::attempts_of_record;
using crier::detail::from_unix_ms;
using crier::detail::record_of;
using crier::detail::unix_ms;

}  // namespace crier::redis
