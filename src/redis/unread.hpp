// What a consumer group has still to read of an event stream, and what it lost.
//
// Redis counts the entries added to a stream and those each group has read; their difference
// (the group's `lag`) takes an entry deleted before the group read it (trimmed by max_len, an
// XTRIM or XDEL) for unread, for ever. The inspector's lag and a consumer's backlog both want
// what can still be read, so both count it here, and share what was counted.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "common/mutex.hpp"
#include "redis/connection.hpp"
#include "redis/context.hpp"

namespace crier::redis {

struct Unread {
  std::uint64_t unread = 0;  ///< entries after the group's position still in the stream
  std::uint64_t lost = 0;    ///< entries deleted before the group read them
};

/// Counts Unread for (stream, group) pairs. Thread-safe; no lock is held while Redis is asked.
class UnreadCounter {
 public:
  /// `g` is group `group` of stream `key` (XINFO GROUPS), `xinfo_stream` the stream's XINFO
  /// STREAM reply (an error: the stream does not exist). Known at once when the group's
  /// position is at the stream's end or before its first entry, or nothing was ever deleted;
  /// else the entries after the position are read and counted, and the loss found kept while
  /// the group only reads on and the first entry stays at or before where it was then (it
  /// lost none since), so that the count is not made again at each look.
  Unread count(Connection& conn, const std::string& key, const std::string& group, const GroupInfo& g,
               const Reply& xinfo_stream) CRIER_EXCLUDES(mu_);

 private:
  struct Found {
    std::uint64_t lost = 0;
    std::string position;  // the group's position when it was found
  };
  void keep(const std::pair<std::string, std::string>& pair, std::optional<Found> found) CRIER_EXCLUDES(mu_);

  crier::detail::Mutex mu_;
  std::map<std::pair<std::string, std::string>, Found> found_ CRIER_GUARDED_BY(mu_);  // by (stream, group)
};

/// The entries of stream `key` after entry `id`, counted by reading them.
std::uint64_t count_after(Connection& conn, const std::string& key, const std::string& id);

}  // namespace crier::redis
