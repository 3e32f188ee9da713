#include "redis/unread.hpp"

#include <algorithm>

#include "redis/fields.hpp"

namespace crier::redis {

std::uint64_t count_after(Connection& conn, const std::string& key, const std::string& id) {
  std::uint64_t n = 0;
  std::string cursor = "(" + id;
  for (;;) {
    const Reply page =
        conn.command({"XRANGE", key, cursor, "+", "COUNT", std::to_string(kWalkPage)}, "redis: counting " + key);
    n += page.elements.size();
    if (page.elements.size() < kWalkPage) return n;
    cursor = "(" + page.elements.back().elements[0].str;
  }
}

Unread UnreadCounter::count(Connection& conn, const std::string& key, const std::string& group, const GroupInfo& g,
                            const Reply& xinfo_stream) {
  const std::pair<std::string, std::string> pair{key, group};
  // Redis's lag where it has one, else counted (entries were deleted mid-stream, or the group
  // was moved).
  auto unread_by_lag = [&](const std::string& last) -> std::uint64_t {
    if (g.lag_known) return g.lag;
    if (!id_less(g.last_delivered, last)) return 0;
    return count_after(conn, key, g.last_delivered);
  };
  if (xinfo_stream.is_error()) return {unread_by_lag(""), 0};
  auto st = map_of(xinfo_stream);
  const std::string& last = st["last-generated-id"].str;
  const auto added = static_cast<std::uint64_t>(std::max<std::int64_t>(0, st["entries-added"].as_integer()));
  const auto length = static_cast<std::uint64_t>(std::max<std::int64_t>(0, st["length"].as_integer()));
  if (!g.entries_read || *g.entries_read > added) {  // Redis cannot tell (the group was moved)
    keep(pair, std::nullopt);
    return {unread_by_lag(last), 0};
  }
  const std::uint64_t behind = added - *g.entries_read;  // unread, and lost if any
  const Reply& first_entry = st["first-entry"];
  const std::string first = first_entry.elements.size() == 2 ? first_entry.elements[0].str : last;
  std::optional<Found> kept;
  {
    crier::detail::MutexLock lock(mu_);
    if (const auto it = found_.find(pair); it != found_.end()) kept = it->second;
  }
  std::uint64_t unread = 0;
  if (!id_less(g.last_delivered, last))
    unread = 0;
  else if (added == length)  // nothing was ever deleted
    unread = behind;
  else if (id_less(g.last_delivered, first))
    unread = length;
  else if (kept && kept->lost <= behind && !id_less(g.last_delivered, kept->position) &&
           !id_less(kept->position, first))
    unread = behind - kept->lost;  // it read on, and nothing it had not read was deleted since
  else
    unread = count_after(conn, key, g.last_delivered);
  const std::uint64_t lost = behind > unread ? behind - unread : 0;
  keep(pair, Found{lost, g.last_delivered});
  return {unread, lost};
}

void UnreadCounter::keep(const std::pair<std::string, std::string>& pair, std::optional<Found> found) {
  crier::detail::MutexLock lock(mu_);
  if (found)
    found_[pair] = std::move(*found);
  else
    found_.erase(pair);
}

}  // namespace crier::redis
