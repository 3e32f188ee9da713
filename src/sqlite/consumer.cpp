// A consumer of one subscriber name's events in a SQLite store.
//
// Reading: each subscriber (name, type) has a cursor. A fetch moves the cursor over the next
// events and records them as one claim (a range owned by this consumer until its lease
// expires), in one transaction, so consumers of the same name in other processes take the
// next range: competing consumers. A claim is deleted once every event in it is settled; a
// claim whose owner died expires and is taken over, and its events are delivered again.
// An event that fails moves out of its claim into its own row (attempts, retry time); redriven
// dead letters come back the same way.
#include <algorithm>
#include <limits>
#include <map>

#include "common/mutex.hpp"
#include "crier/detail/core.hpp"
#include "owner.hpp"
#include "store_impl.hpp"

namespace crier::sqlite {

namespace {

// How many sequences one fetch looks at: the cursor moves past other types' events in steps
// of this size.
constexpr std::int64_t kScan = 4096;

// The claim's queries that are assembled from kEventColumns, assembled once: the statement
// cache finds a statement by its text, which a claim would otherwise build (and allocate)
// every time it runs.
struct ClaimSql {
  // Retry rows nobody holds, with their events, up to a sequence.
  std::string retries = "SELECT r.attempts, r.first_error, r.first_failure_ms, r.retry_at_ms, r.edited_data, " +
                        std::string(kEventColumns) +
                        " FROM crier_retries r JOIN crier_events e ON e.seq = r.seq WHERE r.subscriber = ?1 AND "
                        "r.type = ?2 AND r.expires_ms < ?3 AND r.seq <= ?4 ORDER BY r.seq LIMIT ?5";
  // The events of a claim whose lease ran out, but those with a retry row or a dead letter.
  std::string claim_events =
      "SELECT " + std::string(kEventColumns) + " FROM crier_events e WHERE e.seq BETWEEN ?1 AND ?2 AND " +
      of_type_or_damaged(3) +
      " AND NOT EXISTS "
      "(SELECT 1 FROM crier_retries r WHERE r.subscriber = ?4 AND r.type = ?3 AND r.seq = e.seq) "
      "AND NOT EXISTS (SELECT 1 FROM crier_dead_letters d WHERE d.seq = e.seq AND "
      "d.subscriber = ?4 AND d.type = ?3) ORDER BY e.seq";
  // New events after the cursor.
  std::string new_events = "SELECT " + std::string(kEventColumns) +
                           " FROM crier_events e WHERE e.seq > ?1 AND e.seq <= ?2 AND " + of_type_or_damaged(3) +
                           " ORDER BY e.seq LIMIT ?4";
};
const ClaimSql& claim_sql() {
  static const ClaimSql sql;
  return sql;
}

// A consumer's hold on one event: its sequence, which is also its position.
class RowLease final : public Lease {
 public:
  explicit RowLease(std::int64_t seq) : seq(seq) {}
  std::string position() const override { return std::to_string(seq); }
  const std::int64_t seq;
};

std::int64_t seq_of(const Lease& lease) { return static_cast<const RowLease&>(lease).seq; }
std::int64_t seq_of(const StoredEvent& e) { return seq_of(*e.lease); }

class SqliteConsumer final : public Consumer {
 public:
  SqliteConsumer(std::shared_ptr<Store::Impl> store, ConsumerSpec spec)
      : s_(std::move(store)), spec_(std::move(spec)), owner_(new_owner_id()) {
    crier::detail::check_names(spec_.subscriber, spec_.event_type, s_->path);
    // A new name's start is fixed now, not at its first fetch: StartFrom::now() means the
    // moment of subscribe, after what this store journaled is in the database.
    s_->wait_moved();
    MutexLock lock(s_->db_mu);
    Transaction t(s_->db, s_->path);
    Stmt cursor(*s_->stmts,
                "INSERT INTO crier_cursors (subscriber, type, position) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
    cursor.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, start_position(s_->head()));
    cursor.run();
    t.commit();
  }

  ~SqliteConsumer() override { close(); }

  std::vector<StoredEvent> fetch(std::size_t max, std::chrono::milliseconds wait) override {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
      std::size_t room;
      {
        MutexLock lock(mu_);
        while (!closed_ && outstanding_ >= s_->options.window && space_cv_.wait_until(mu_, deadline)) {
        }
        if (closed_) return {};
        room = outstanding_ < s_->options.window ? std::min(max, s_->options.window - outstanding_) : 0;
      }
      if (room == 0) {  // the window stayed full: keep the leases fresh and come back
        housekeeping();
        return {};
      }
      const std::uint64_t seen = s_->changes.load(std::memory_order_acquire);
      // Nothing committed since a claim found nothing: only time can make events due (a lease
      // that ran out, a retry row's time), so look again only after a while. A claim is a
      // write transaction: one every fetch would cost an idle subscriber CPU all the time.
      const auto now = std::chrono::steady_clock::now();
      if (seen != quiet_at_changes_ || settled_claims_.load(std::memory_order_acquire) || now >= quiet_until_) {
        std::int64_t next_due_ms = 0;
        std::vector<StoredEvent> got = claim(room, next_due_ms);
        if (!got.empty()) {
          quiet_until_ = {};
          return got;
        }
        quiet_at_changes_ = seen;
        quiet_until_ = now + idle_look_;
        // A retry waiting in the store, or a lease running out: look again when it is due.
        if (next_due_ms != 0)
          quiet_until_ = std::min(quiet_until_, now + std::chrono::milliseconds(next_due_ms - wall_ms() + 1));
      }
      if (std::chrono::steady_clock::now() >= deadline) return {};
      s_->wait_change(seen, std::min(deadline, quiet_until_), [this] {
        return closed_.load(std::memory_order_acquire) || settled_claims_.load(std::memory_order_acquire);
      });
    }
  }

  void ack(std::unique_ptr<Lease> lease) override { settle(seq_of(*lease), true); }

  void failed(Lease& lease, const Attempts& attempts) override {
    if (closed_.load(std::memory_order_acquire)) return;
    const std::int64_t sequence = seq_of(lease);
    record_attempts(sequence, attempts, owner_, wall_ms() + s_->options.lease.count());
    // The event now has its own row, which this consumer holds: its claim no longer waits
    // for it, and it no longer counts against the window.
    MutexLock lock(mu_);
    auto it = held_.find(sequence);
    if (it == held_.end()) return;
    release_claim(it->second.claim);
    if (it->second.counted) --outstanding_;
    it->second = Held{0, false};
    space_cv_.notify_all();
  }

  bool redelivers() const noexcept override { return s_->options.retries_wait_in_store; }

  void retry(std::unique_ptr<Lease> lease, const Attempts& attempts) override {
    const std::int64_t sequence = seq_of(*lease);
    // Its own row, held by nobody, whose lease ends when the retry is due: then any consumer
    // of the name takes it (claim(), step 1), with its attempts.
    record_attempts(sequence, attempts, "", to_ms(attempts.retry_at));
    settle(sequence, false);
    s_->note_change();
  }

  std::uint64_t dead_letter(std::unique_ptr<Lease> lease, const DeadLetter& letter) override {
    const std::int64_t sequence = seq_of(*lease);
    std::uint64_t id = 0;
    try {
      MutexLock lock(s_->db_mu);
      Transaction t(s_->db, s_->path);
      Stmt ins(*s_->stmts,
               "INSERT INTO crier_dead_letters (subscriber, type, seq, attempts, first_error, last_error, "
               "first_failure, last_failure, edited_data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, (SELECT "
               "edited_data FROM crier_retries WHERE subscriber = ?1 AND type = ?2 AND seq = ?3))");
      const std::string first = format_time(letter.first_failure), last = format_time(letter.last_failure);
      ins.bind(1, spec_.subscriber)
          .bind(2, spec_.event_type)
          .bind(3, sequence)
          .bind(4, letter.attempts)
          .bind(5, letter.first_error)
          .bind(6, letter.last_error)
          .bind(7, first)
          .bind(8, last);
      ins.run();
      id = static_cast<std::uint64_t>(sqlite3_last_insert_rowid(s_->db));
      Stmt del(*s_->stmts, "DELETE FROM crier_retries WHERE subscriber = ?1 AND type = ?2 AND seq = ?3");
      del.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, sequence);
      del.run();
      t.commit();
    } catch (const std::exception&) {
      // Not stored: it waits as a retry does, in a row of its own that any consumer of the
      // name takes once the lease has lapsed, rather than coming back at once to run its
      // handler over and over. If not even that is written, this consumer goes on holding it.
      try {
        const std::int64_t due = wall_ms() + s_->options.lease.count();
        record_attempts(sequence, Attempts{letter.attempts, letter.first_error, letter.first_failure, from_ms(due)}, "",
                        due);
        settle(sequence, false);
        s_->note_change();
      } catch (const std::exception&) {
      }
      throw;
    }
    settle(sequence, false);
    return id;
  }

  void taken(std::size_t n) override {
    MutexLock lock(mu_);
    untaken_ -= std::min(n, untaken_);
  }

  bool caught_up() override {
    if (s_->backlog() != 0) return false;  // journaled here, not yet in the database
    MutexLock lock(s_->db_mu);
    {
      MutexLock held(mu_);  // claimed, not yet in the bus's hands
      if (untaken_ != 0) return false;
    }
    Flushed flushed(*this);
    flush_settled(flushed);
    flushed.committed();  // no transaction: each deletion committed on its own
    release_dead_owners(wall_ms());
    const std::int64_t head = s_->head();
    Stmt cursor(*s_->stmts, "SELECT position FROM crier_cursors WHERE subscriber = ?1 AND type = ?2");
    cursor.bind(1, spec_.subscriber).bind(2, spec_.event_type);
    if (!cursor.step()) return head == 0;
    if (cursor.int64(0) < head) return false;
    const std::int64_t now = wall_ms();
    Stmt open(*s_->stmts,
              "SELECT (SELECT count(*) FROM crier_claims WHERE subscriber = ?1 AND type = ?2 AND expires_ms < ?3) + "
              "(SELECT count(*) FROM crier_retries WHERE subscriber = ?1 AND type = ?2 AND ((expires_ms < ?3 "
              "AND retry_at_ms <= ?3) OR owner = ''))");
    open.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, now);
    return open.step() && open.int64(0) == 0;
  }

  std::uint64_t backlog() override { return s_->unfinished(spec_.subscriber, spec_.event_type); }

  void close() noexcept override {
    if (closed_.exchange(true, std::memory_order_acq_rel)) return;
    {
      MutexLock lock(mu_);
      space_cv_.notify_all();
    }
    s_->wake_all();
    // Settled claims go; what is still held goes back to the store at once, for the next
    // consumer of this name (or this one's next start).
    try {
      MutexLock lock(s_->db_mu);
      Transaction t(s_->db, s_->path);
      Flushed flushed(*this);
      flush_settled(flushed);
      return_partly_settled_claims();
      release_owner(owner_);
      t.commit();
      flushed.committed();
      s_->note_change();  // the other consumers of this name take them at once
    } catch (const std::exception&) {
      // The leases then simply expire.
    }
  }

 private:
  struct Held {
    std::int64_t claim;  // the first sequence of its claim; 0: it has its own retries row
    bool counted;        // counts against the window
  };

  static std::int64_t to_ms(Timestamp t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  }
  // A time read from the file, which another program (or damage) may have written: one a
  // Timestamp cannot hold (its nanoseconds would overflow) reads as the epoch, i.e. long past:
  // a retry due at once rather than never, and never undefined behaviour.
  static Timestamp from_ms(std::int64_t ms) {
    constexpr std::int64_t kMax =
        std::chrono::duration_cast<std::chrono::milliseconds>(Timestamp::duration::max()).count();
    if (ms > kMax || ms < -kMax) return Timestamp{};
    return Timestamp(std::chrono::milliseconds(ms));
  }
  // An attempt count read from the file, kept well within what an int holds.
  static int attempts_from(std::int64_t n) {
    return static_cast<int>(std::clamp<std::int64_t>(n, 0, std::numeric_limits<int>::max() / 2));
  }

  // Records an event's attempts in its own retry row, held by `owner` until `expires_ms`.
  void record_attempts(std::int64_t sequence, const Attempts& a, const std::string& owner, std::int64_t expires_ms) {
    MutexLock lock(s_->db_mu);
    Stmt q(*s_->stmts,
           "INSERT INTO crier_retries (subscriber, type, seq, attempts, first_error, first_failure_ms, retry_at_ms, "
           "owner, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO UPDATE SET "
           "attempts = ?4, first_error = ?5, first_failure_ms = ?6, retry_at_ms = ?7, owner = ?8, expires_ms = ?9");
    q.bind(1, spec_.subscriber)
        .bind(2, spec_.event_type)
        .bind(3, sequence)
        .bind(4, a.failed)
        .bind(5, a.first_error)
        .bind(6, to_ms(a.first_failure))
        .bind(7, to_ms(a.retry_at))
        .bind(8, owner)
        .bind(9, expires_ms);
    q.run();
  }

  // Under mu_: one event of claim `first` is settled or moved out.
  void release_claim(std::int64_t first) CRIER_REQUIRES(mu_) {
    if (first == 0) return;
    auto c = claims_.find(first);
    if (c != claims_.end() && --c->second.left == 0) {
      claims_.erase(c);
      done_claims_.push_back(first);
      // Wake the fetch to delete it: retention and other processes see it finished soon.
      settled_claims_.store(true, std::memory_order_release);
      s_->wake_all();
    }
  }

  // The event is no longer this consumer's to hold; `own_row_done`: its retry row (if it has
  // one) is to be deleted.
  void settle(std::int64_t sequence, bool own_row_done) {
    MutexLock lock(mu_);
    auto it = held_.find(sequence);
    if (it == held_.end()) return;
    if (it->second.claim == 0) {
      if (own_row_done) done_retries_.push_back(sequence);
    } else {
      release_claim(it->second.claim);
    }
    if (it->second.counted) --outstanding_;
    held_.erase(it);
    space_cv_.notify_all();
  }

  // Claims and retry rows deleted by a transaction not yet committed. If the commit fails
  // (a full disk), the deletions roll back, so they go back on the lists to be deleted again:
  // forgotten, they would keep finished events claimed and deliver them again after a restart.
  class Flushed {
   public:
    explicit Flushed(SqliteConsumer& c) : c_(c) {}
    Flushed(const Flushed&) = delete;
    Flushed& operator=(const Flushed&) = delete;
    ~Flushed() {
      if (committed_ || (claims.empty() && retries.empty())) return;
      MutexLock lock(c_.mu_);
      c_.done_claims_.insert(c_.done_claims_.end(), claims.begin(), claims.end());
      c_.done_retries_.insert(c_.done_retries_.end(), retries.begin(), retries.end());
      c_.settled_claims_.store(true, std::memory_order_release);
    }
    /// The transaction that deleted them committed. Consumers that wait for this subscriber's
    /// events to be finished (an ordered subscriber's other consumers) look again.
    void committed() noexcept {
      committed_ = true;
      if (!claims.empty() || !retries.empty()) c_.s_->note_change();
    }
    std::vector<std::int64_t> claims, retries;

   private:
    SqliteConsumer& c_;
    bool committed_ = false;
  };

  // Caller holds db_mu: deletes the claims and retry rows that are done, in the caller's
  // transaction; `f` puts them back unless told that the transaction committed.
  void flush_settled(Flushed& f) CRIER_REQUIRES(s_->db_mu) {
    {
      MutexLock lock(mu_);
      settled_claims_.store(false, std::memory_order_relaxed);
      f.claims.swap(done_claims_);
      f.retries.swap(done_retries_);
    }
    Stmt dc(*s_->stmts, "DELETE FROM crier_claims WHERE subscriber = ?1 AND type = ?2 AND first_seq = ?3");
    for (std::int64_t first : f.claims) {
      dc.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, first);
      dc.run();
    }
    Stmt dr(*s_->stmts, "DELETE FROM crier_retries WHERE subscriber = ?1 AND type = ?2 AND seq = ?3 AND owner = ?4");
    for (std::int64_t seq : f.retries) {
      dr.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, seq).bind(4, owner_);
      dr.run();
    }
    if (f.claims.empty() && f.retries.empty()) return;
    Stmt settled(*s_->stmts, "UPDATE crier_cursors SET settled_ms = ?3 WHERE subscriber = ?1 AND type = ?2");
    settled.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, wall_ms());
    settled.run();
  }

  // Caller holds db_mu inside a transaction (closing): a claim of which some events were
  // settled cannot go back whole, or they would be delivered again: its unsettled events go
  // back one by one, as retry rows due now that any consumer takes, and the claim goes. A
  // bus that drains thus leaves exactly the events it did not finish.
  void return_partly_settled_claims() CRIER_REQUIRES(s_->db_mu) {
    std::map<std::int64_t, std::vector<std::int64_t>> unsettled;  // claim -> its held events
    {
      MutexLock lock(mu_);
      for (const auto& [first, count] : claims_)
        if (count.left < count.events) unsettled[first];
      if (unsettled.empty()) return;
      for (const auto& [seq, held] : held_) {
        auto it = unsettled.find(held.claim);
        if (it != unsettled.end()) it->second.push_back(seq);
      }
    }
    Stmt retry(*s_->stmts,
               "INSERT INTO crier_retries (subscriber, type, seq, attempts, first_error, first_failure_ms, "
               "retry_at_ms, owner, expires_ms) VALUES (?1, ?2, ?3, 0, '', 0, 0, '', 0) ON CONFLICT DO NOTHING");
    Stmt drop(*s_->stmts, "DELETE FROM crier_claims WHERE subscriber = ?1 AND type = ?2 AND first_seq = ?3");
    for (const auto& [first, seqs] : unsettled) {
      for (std::int64_t seq : seqs) {
        retry.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, seq);
        retry.run();
      }
      drop.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, first);
      drop.run();
    }
  }

  // Caller holds db_mu inside a transaction: extends this consumer's leases when due.
  void renew(std::int64_t now) CRIER_REQUIRES(s_->db_mu) {
    if (now - renewed_ms_ < s_->options.lease.count() / 3) return;
    const std::int64_t expires = now + s_->options.lease.count();
    Stmt c(*s_->stmts, "UPDATE crier_claims SET expires_ms = ?1 WHERE owner = ?2");
    c.bind(1, expires).bind(2, owner_);
    c.run();
    Stmt r(*s_->stmts, "UPDATE crier_retries SET expires_ms = ?1 WHERE owner = ?2");
    r.bind(1, expires).bind(2, owner_);
    r.run();
    renewed_ms_ = now;
  }

  // Caller holds db_mu: ends at once the leases of this subscriber's claims and retry rows
  // whose process died on this host.
  void release_dead_owners(std::int64_t now) CRIER_REQUIRES(s_->db_mu) {
    Stmt owners(*s_->stmts,
                "SELECT owner FROM crier_claims WHERE subscriber = ?1 AND type = ?2 AND expires_ms >= ?3 AND "
                "owner != ?4 UNION SELECT owner FROM crier_retries WHERE subscriber = ?1 AND type = ?2 AND "
                "expires_ms >= ?3 AND owner != ?4 AND owner != ''");
    owners.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, now).bind(4, owner_);
    std::vector<std::string> dead;
    while (owners.step()) {
      std::string o = owners.text(0);
      if (!owner_alive(o)) dead.push_back(std::move(o));
    }
    owners.reset();
    for (const std::string& o : dead) release_owner(o);
  }

  // Caller holds db_mu: true while another live consumer of this subscriber holds events
  // (claimed or waiting for a retry). An ordered subscriber's consumers take turns: one
  // consumer at a time holds unfinished events, so no key's event can run in one process
  // while an earlier one is unfinished in another.
  bool held_by_another(std::int64_t now) CRIER_REQUIRES(s_->db_mu) {
    Stmt q(*s_->stmts,
           "SELECT EXISTS (SELECT 1 FROM crier_claims WHERE subscriber = ?1 AND type = ?2 AND owner != ?3 AND "
           "expires_ms >= ?4) OR EXISTS (SELECT 1 FROM crier_retries WHERE subscriber = ?1 AND type = ?2 AND "
           "owner != ?3 AND expires_ms >= ?4)");
    q.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, owner_).bind(4, now);
    return q.step() && q.int64(0) != 0;
  }

  // Caller holds db_mu: ends the leases of everything `owner` holds, for others to take.
  void release_owner(const std::string& owner) CRIER_REQUIRES(s_->db_mu) {
    for (const char* sql : {"UPDATE crier_claims SET expires_ms = 0 WHERE owner = ?1",
                            "UPDATE crier_retries SET expires_ms = 0 WHERE owner = ?1"}) {
      Stmt release(*s_->stmts, sql);
      release.bind(1, owner);
      release.run();
    }
  }

  void housekeeping() {
    MutexLock lock(s_->db_mu);
    Transaction t(s_->db, s_->path);
    Flushed flushed(*this);
    flush_settled(flushed);
    renew(wall_ms());
    t.commit();
    flushed.committed();
  }

  // Where a subscriber the store has never seen starts.
  std::int64_t start_position(std::int64_t head) CRIER_REQUIRES(s_->db_mu) {
    const StartFrom& from = spec_.start;
    switch (from.kind) {
      case StartFrom::Kind::beginning:
        return 0;
      case StartFrom::Kind::now:
        return head;
      case StartFrom::Kind::position:
        return parse_position(s_->path, from.position) - 1;
      case StartFrom::Kind::time: {
        Stmt q(*s_->stmts, "SELECT min(seq) FROM crier_events WHERE time >= ?1");
        const std::string t = format_time(from.time);
        q.bind(1, t);
        return q.step() && !q.is_null(0) ? q.int64(0) - 1 : head;
      }
    }
    return 0;
  }

  // Reads and verifies the event at column `first`: a damaged one is handed over marked, for
  // the bus to dead-letter (never skipped: the cursor moves past it like past any other).
  StoredEvent read_event(const Stmt& row, int first) {
    StoredEvent e;
    const std::int64_t sequence = row.int64(first);
    e.lease = std::make_unique<RowLease>(sequence);
    const std::string damage = row_damage(row, first);
    if (!damage.empty())
      e.corrupt = "corrupt event in " + s_->path + " at sequence " + std::to_string(sequence) + ": " + damage;
    e.envelope = read_envelope(row, first);
    return e;
  }

  // One transaction: flush what is settled, renew leases, then take (in this order) a claim
  // whose owner died, retry rows nobody holds, new events after the cursor. When it finds
  // nothing, `next_due_ms` is the wall time at which a lease of this subscriber's (a claim,
  // a retry row) runs out next, or 0 when none will.
  std::vector<StoredEvent> claim(std::size_t max, std::int64_t& next_due_ms) {
    std::vector<StoredEvent> out;
    std::vector<std::pair<std::int64_t, std::vector<std::int64_t>>> new_claims;  // first -> its events
    std::vector<std::int64_t> own_rows;
    {
      MutexLock lock(s_->db_mu);
      // close() releases this consumer's claims under db_mu after setting closed_: a claim
      // made after that would be held by nobody until its lease ran out.
      if (closed_.load(std::memory_order_acquire)) return out;
      Transaction t(s_->db, s_->path);
      const std::int64_t now = wall_ms();
      const std::int64_t expires = now + s_->options.lease.count();
      Flushed flushed(*this);
      flush_settled(flushed);
      renew(now);
      release_dead_owners(now);
      if (spec_.ordered && held_by_another(now)) {
        t.commit();  // what was settled is deleted; the events wait for the other consumer
        flushed.committed();
        return out;
      }

      // 1. Events older than the cursor that nobody holds, in sequence order: the claims of
      // consumers whose lease ran out (or whose process died), and retry rows (failed in a
      // consumer that is gone, or redriven). A claim is taken whole, with every retry row up
      // to its end (its own failed events among them), so that neither overtakes the other;
      // new events wait until all of them are taken, so that nothing overtakes them either.
      bool older_left = false;
      Stmt retries(*s_->stmts, claim_sql().retries);
      Stmt take_retry(*s_->stmts,
                      "UPDATE crier_retries SET owner = ?1, expires_ms = ?2 WHERE subscriber = ?3 AND type = ?4 AND "
                      "seq = ?5");
      // Takes up to `limit` retry rows up to sequence `last`; returns how many.
      auto take_retries = [&](std::int64_t last, std::int64_t limit) {
        retries.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, now).bind(4, last).bind(5, limit);
        std::vector<StoredEvent> taken;
        while (retries.step()) {
          StoredEvent e = read_event(retries, 5);
          if (!retries.is_null(4)) e.envelope.data = retries.blob(4);  // redriven edited
          e.attempts.failed = attempts_from(retries.int64(0));
          e.attempts.first_error = retries.text(1);
          e.attempts.first_failure = from_ms(retries.int64(2));
          e.attempts.retry_at = from_ms(retries.int64(3));
          taken.push_back(std::move(e));
        }
        retries.reset();
        for (StoredEvent& e : taken) {
          take_retry.bind(1, owner_)
              .bind(2, expires)
              .bind(3, spec_.subscriber)
              .bind(4, spec_.event_type)
              .bind(5, seq_of(e));
          take_retry.run();
          own_rows.push_back(seq_of(e));
          out.push_back(std::move(e));
        }
        return taken.size();
      };
      constexpr std::int64_t kAll = std::numeric_limits<std::int64_t>::max();
      Stmt expired(*s_->stmts,
                   "SELECT first_seq, last_seq FROM crier_claims WHERE subscriber = ?1 AND type = ?2 AND "
                   "expires_ms < ?3 ORDER BY first_seq LIMIT 1");
      while (out.size() < max) {
        expired.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, now);
        if (!expired.step()) break;
        const std::int64_t first = expired.int64(0), last = expired.int64(1);
        expired.reset();
        take_retries(last, kAll);
        Stmt events(*s_->stmts, claim_sql().claim_events);
        events.bind(1, first).bind(2, last).bind(3, spec_.event_type).bind(4, spec_.subscriber);
        std::vector<std::int64_t> seqs;
        while (events.step()) {
          out.push_back(read_event(events, 0));
          seqs.push_back(seq_of(out.back()));
        }
        if (seqs.empty()) {
          Stmt del(*s_->stmts, "DELETE FROM crier_claims WHERE subscriber = ?1 AND type = ?2 AND first_seq = ?3");
          del.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, first);
          del.run();
        } else {
          Stmt take(*s_->stmts,
                    "UPDATE crier_claims SET owner = ?1, expires_ms = ?2 WHERE subscriber = ?3 AND type = ?4 AND "
                    "first_seq = ?5");
          take.bind(1, owner_).bind(2, expires).bind(3, spec_.subscriber).bind(4, spec_.event_type).bind(5, first);
          take.run();
          new_claims.emplace_back(first, std::move(seqs));
        }
      }
      if (out.size() >= max) {
        older_left = true;  // perhaps more claims
      } else {
        const auto room = static_cast<std::int64_t>(max - out.size());
        if (static_cast<std::int64_t>(take_retries(kAll, room)) == room) older_left = true;  // perhaps more
      }

      // 3. New events after the cursor.
      if (out.size() < max && !older_left) {
        const std::int64_t head = s_->head();
        Stmt cur(*s_->stmts, "SELECT position FROM crier_cursors WHERE subscriber = ?1 AND type = ?2");
        cur.bind(1, spec_.subscriber).bind(2, spec_.event_type);
        std::int64_t position;
        bool known = cur.step();
        position = known ? cur.int64(0) : start_position(head);
        cur.reset();
        std::int64_t moved = position;
        if (position < head) {
          const std::int64_t until = std::min(head, position + kScan);
          Stmt events(*s_->stmts, claim_sql().new_events);
          events.bind(1, position)
              .bind(2, until)
              .bind(3, spec_.event_type)
              .bind(4, static_cast<std::int64_t>(max - out.size()));
          std::vector<std::int64_t> seqs;
          std::size_t got = 0;
          const std::size_t want = max - out.size();
          while (events.step()) {
            out.push_back(read_event(events, 0));
            seqs.push_back(seq_of(out.back()));
            ++got;
          }
          moved = got == want ? seqs.back() : until;
          if (!seqs.empty()) {
            Stmt ins(*s_->stmts,
                     "INSERT INTO crier_claims (subscriber, type, first_seq, last_seq, owner, expires_ms) VALUES "
                     "(?1, ?2, ?3, ?4, ?5, ?6)");
            ins.bind(1, spec_.subscriber)
                .bind(2, spec_.event_type)
                .bind(3, seqs.front())
                .bind(4, seqs.back())
                .bind(5, owner_)
                .bind(6, expires);
            ins.run();
            new_claims.emplace_back(seqs.front(), std::move(seqs));
          }
        }
        if (!known || moved != position) {
          Stmt upd(*s_->stmts,
                   "INSERT INTO crier_cursors (subscriber, type, position) VALUES (?1, ?2, ?3) "
                   "ON CONFLICT DO UPDATE SET position = ?3");
          upd.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, moved);
          upd.run();
        }
      }
      if (out.empty()) {
        Stmt due(
            *s_->stmts,
            "SELECT min(m) FROM (SELECT min(expires_ms) AS m FROM crier_claims WHERE subscriber = ?1 AND "
            "type = ?2 AND expires_ms >= ?3 AND owner != ?4 UNION ALL SELECT min(expires_ms) FROM crier_retries WHERE "
            "subscriber = ?1 AND type = ?2 AND expires_ms >= ?3 AND owner != ?4)");
        due.bind(1, spec_.subscriber).bind(2, spec_.event_type).bind(3, now).bind(4, owner_);
        if (due.step() && !due.is_null(0)) next_due_ms = due.int64(0);
      }
      t.commit();
      flushed.committed();
      // In sequence order: a retry row taken over may be older than a claim's events, and
      // per-key order needs the older first.
      std::sort(out.begin(), out.end(),
                [](const StoredEvent& a, const StoredEvent& b) { return seq_of(a) < seq_of(b); });
      // Counted before db_mu is let go: caught_up() must never see the cursor moved past
      // events that are neither counted here nor in the bus's hands.
      MutexLock counts(mu_);
      for (auto& [first, seqs] : new_claims) {
        claims_[first] = ClaimCount{seqs.size(), seqs.size()};
        for (std::int64_t q : seqs) held_[q] = Held{first, true};
      }
      for (std::int64_t q : own_rows) held_[q] = Held{0, true};
      outstanding_ += out.size();
      untaken_ += out.size();
    }
    return out;
  }

  std::shared_ptr<Store::Impl> s_;
  const ConsumerSpec spec_;
  const std::string owner_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> settled_claims_{false};  // done_claims_ has claims to delete
  std::int64_t renewed_ms_ CRIER_GUARDED_BY(s_->db_mu) = 0;
  // Used by fetch only (one thread): the change count when a claim last found nothing, and
  // until when no claim is needed unless something is committed.
  std::uint64_t quiet_at_changes_ = 0;
  std::chrono::steady_clock::time_point quiet_until_{};
  const std::chrono::milliseconds idle_look_ =
      std::min(std::chrono::milliseconds(1000), std::max(std::chrono::milliseconds(1), s_->options.lease / 4));

  Mutex mu_;
  CondVar space_cv_;
  std::size_t outstanding_ CRIER_GUARDED_BY(mu_) = 0;
  std::size_t untaken_ = 0;                                  // fetched, not yet taken(); guarded by mu_
  std::map<std::int64_t, Held> held_ CRIER_GUARDED_BY(mu_);  // sequence -> how it is held
  struct ClaimCount {
    std::size_t events;  // in the claim
    std::size_t left;    // not settled
  };
  std::map<std::int64_t, ClaimCount> claims_ CRIER_GUARDED_BY(mu_);  // first sequence -> its counts
  std::vector<std::int64_t> done_claims_ CRIER_GUARDED_BY(mu_);
  std::vector<std::int64_t> done_retries_ CRIER_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<Consumer> Store::consume(const ConsumerSpec& spec) {
  impl_->refuse_if_read_only("subscribing");
  if (spec.start.kind == StartFrom::Kind::position) parse_position(impl_->path, spec.start.position);  // says why now
  return std::make_unique<SqliteConsumer>(impl_, spec);
}

}  // namespace crier::sqlite
