// The SQLite store's Inspector: what the tools see of the file, and the few changes they may
// make (moving a subscriber's position, publishing a CloudEvent given as JSON). Positions are
// event sequences in decimal.
#include <algorithm>
#include <charconv>

#include "crier/event.hpp"
#include "event_row.hpp"
#include "store_impl.hpp"

namespace crier::sqlite {

using namespace detail;

namespace {

std::string position_text(std::int64_t seq) { return seq > 0 ? std::to_string(seq) : std::string(); }

}  // namespace

std::vector<SubscriberStatus> Store::subscribers() {
  Impl& s = *impl_;
  if (s.backlog() != 0) s.wait_moved();  // journaled events count once they are in the database
  std::vector<SubscriberStatus> out;
  MutexLock lock(s.db_mu);
  const ReadSnapshot snapshot(s.db, s.path);  // every count of one moment
  {
    Stmt names(*s.stmts,
               "SELECT subscriber, type FROM crier_cursors UNION SELECT subscriber, type FROM crier_claims "
               "UNION SELECT subscriber, type FROM crier_retries UNION SELECT subscriber, type FROM "
               "crier_dead_letters ORDER BY 1, 2");
    while (names.step()) out.push_back(SubscriberStatus{names.text(0), names.text(1)});
  }
  Stmt q(*s.stmts,
         "SELECT (SELECT position FROM crier_cursors WHERE subscriber = ?1 AND type = ?2), "
         "(SELECT settled_ms FROM crier_cursors WHERE subscriber = ?1 AND type = ?2), "
         "(SELECT count(*) FROM crier_retries WHERE subscriber = ?1 AND type = ?2), "
         "(SELECT count(*) FROM crier_dead_letters WHERE subscriber = ?1 AND type = ?2), " +
             std::string(kHeldUnsettled) +
             ", "
             // The oldest event that may be unfinished, but for the unread ones: the first
             // retry, the first claimed.
             "(SELECT min(m) FROM (SELECT min(seq) AS m FROM crier_retries WHERE subscriber = ?1 AND type = ?2 "
             "UNION ALL SELECT min(first_seq) FROM crier_claims WHERE subscriber = ?1 AND type = ?2))");
  Stmt stored(*s.stmts, "SELECT stored_ms FROM crier_events WHERE seq = ?1");
  const std::int64_t now = wall_ms();
  for (SubscriberStatus& st : out) {
    q.bind(1, st.subscriber).bind(2, st.event_type);
    std::int64_t oldest = 0;
    if (q.step()) {
      st.position = q.is_null(0) ? std::string() : position_text(q.int64(0));
      if (!q.is_null(1)) st.last_settled = Timestamp(std::chrono::milliseconds(q.int64(1)));
      st.retrying = static_cast<std::uint64_t>(q.int64(2));
      st.dead_letters = static_cast<std::uint64_t>(q.int64(3));
      st.in_flight = static_cast<std::uint64_t>(q.int64(4));
      if (!q.is_null(5)) oldest = q.int64(5);
    }
    q.reset();
    // As Store::backlog counts it: unread, held and not settled, waiting for a retry.
    const Impl::Unread unread = s.unread(st.subscriber, st.event_type);
    st.lag = unread.events + st.retrying + st.in_flight;
    if (unread.first != 0 && (oldest == 0 || unread.first < oldest)) oldest = unread.first;
    if (st.lag == 0 || oldest == 0) continue;  // the claims left were all settled
    stored.bind(1, oldest);
    if (stored.step()) st.oldest_age = std::chrono::milliseconds(std::max<std::int64_t>(0, now - stored.int64(0)));
    stored.reset();
  }
  return out;
}

std::vector<EventTypeStatus> Store::event_types() {
  Impl& s = *impl_;
  if (s.backlog() != 0) s.wait_moved();
  MutexLock lock(s.db_mu);
  Store::Impl::TypeCounts& c = s.type_counts;
  std::string prunes;
  std::int64_t first = 0;
  {
    Stmt q(*s.stmts, "SELECT (SELECT value FROM crier_meta WHERE key = 'prunes'), (SELECT min(seq) FROM crier_events)");
    if (q.step()) {
      if (!q.is_null(0)) prunes = q.text(0);
      if (!q.is_null(1)) first = q.int64(1);
    }
  }
  if (prunes != c.prunes || first != c.first) {  // events were deleted: counted again
    c = {};
    c.prunes = prunes;
    c.first = first;
  }
  {
    Stmt q(*s.stmts, "SELECT type, count(*), max(seq) FROM crier_events WHERE seq > ?1 GROUP BY type");
    q.bind(1, c.counted_to);
    while (q.step()) {
      auto& [n, newest] = c.by_type[q.text(0)];
      n += static_cast<std::uint64_t>(q.int64(1));
      newest = std::max(newest, q.int64(2));
      c.counted_to = std::max(c.counted_to, newest);
    }
  }
  std::vector<EventTypeStatus> out;
  Stmt time(*s.stmts, "SELECT time FROM crier_events WHERE seq = ?1");
  for (const auto& [type, counted] : c.by_type) {
    time.bind(1, counted.second);
    out.push_back(EventTypeStatus{type, counted.first, position_text(counted.second), time.step() ? time.text(0) : ""});
    time.reset();
  }
  return out;
}

std::vector<StoredEnvelope> Store::browse(const BrowseQuery& query) {
  Impl& s = *impl_;
  const std::int64_t from = query.from.empty() ? 0 : parse_position(s.path, query.from);
  if (s.backlog() != 0) s.wait_moved();
  MutexLock lock(s.db_mu);
  const std::string order = query.newest_first ? "DESC" : "ASC";
  const std::string from_clause = query.from.empty()   ? ""
                                  : query.newest_first ? " AND e.seq <= ?3"
                                                       : " AND e.seq >= ?3";
  Stmt q(*s.stmts, "SELECT e.seq, " + std::string(kEventColumns) +
                       " FROM crier_events e WHERE (?1 = '' OR e.type = ?1) AND (?2 = '' OR e.time >= ?2)" +
                       from_clause + " ORDER BY e.seq " + order + " LIMIT ?4");
  q.bind(1, query.event_type).bind(2, query.since).bind(3, from);
  q.bind(4, static_cast<std::int64_t>(std::min<std::size_t>(query.limit, 1u << 30)));
  std::vector<StoredEnvelope> out;
  while (q.step()) out.push_back(StoredEnvelope{position_text(q.int64(0)), read_envelope(q, 1)});
  return out;
}

void Store::move(std::string_view subscriber, std::string_view event_type, std::string_view position) {
  Impl& s = *impl_;
  s.refuse_if_read_only("moving a subscriber's position");
  crier::detail::check_names(subscriber, event_type, s.path);
  const bool to_end = position == "end";
  const std::int64_t seq = to_end ? 0 : parse_position(s.path, position);
  if (s.backlog() != 0) s.wait_moved();  // "end" is past what was published before the call
  {
    MutexLock lock(s.db_mu);
    const std::int64_t cursor = to_end ? s.head() : seq - 1;
    Stmt upsert(*s.stmts,
                "INSERT INTO crier_cursors (subscriber, type, position) VALUES (?1, ?2, ?3) "
                "ON CONFLICT DO UPDATE SET position = ?3");
    upsert.bind(1, subscriber).bind(2, event_type).bind(3, cursor);
    upsert.run();
  }
  s.note_change();
}

std::string Store::publish_json(std::string_view cloudevent) {
  impl_->refuse_if_read_only("publishing");
  const Envelope e = crier::detail::cloudevent_to_publish(cloudevent, impl_->path);
  impl_->append(std::span<const Envelope>(&e, 1));
  return e.id;
}

std::vector<std::string> Store::notices() {
  const std::uint64_t n = impl_->orphaned_events();
  if (n == 0) return {};
  const std::string them = n == 1 ? "it" : "them";
  return {std::to_string(n) + (n == 1 ? " published event waits" : " published events wait") + " in " + impl_->path +
          "-journal.d, journaled by a process that ended before moving " + them +
          " into the database: in no count here until a process opens the store for writing (not read-only), "
          "which moves " +
          them + " in"};
}

}  // namespace crier::sqlite
