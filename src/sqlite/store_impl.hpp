// The insides of a SQLite store, shared by the store (publish, dead letters, retention) and
// its consumers.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "change_watch.hpp"
#include "common/mutex.hpp"
#include "crier/sqlite.hpp"
#include "db.hpp"
#include "event_row.hpp"
#include "journal.hpp"

namespace crier::sqlite {

using ::crier::detail::CondVar;
using ::crier::detail::Mutex;
using ::crier::detail::MutexLock;

/// The schema version this build writes, and reads up to.
constexpr int kSchemaVersion = 3;

/// Milliseconds since the Unix epoch: lease expiry and retry times are compared across
/// processes, so they are wall-clock.
/// SQL counting the events subscriber ?1 of type ?2 holds in claims and has not settled
/// (neither a retry row nor a dead letter yet): its events in flight.
constexpr std::string_view kHeldUnsettled =
    "(SELECT count(*) FROM crier_claims c JOIN crier_events e ON e.seq BETWEEN c.first_seq AND c.last_seq AND "
    "e.type = c.type WHERE c.subscriber = ?1 AND c.type = ?2 AND NOT EXISTS (SELECT 1 FROM crier_retries r WHERE "
    "r.subscriber = ?1 AND r.type = ?2 AND r.seq = e.seq) AND NOT EXISTS (SELECT 1 FROM crier_dead_letters d "
    "WHERE d.subscriber = ?1 AND d.type = ?2 AND d.seq = e.seq))";

/// A position this store printed (a sequence, 1 or more); throws Error(Errc::invalid_argument)
/// naming the store otherwise.
std::int64_t parse_position(const std::string& path, std::string_view text);

inline std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Checks that the file is a crier store this build can read (or an empty one) and brings
/// its schema up to kSchemaVersion. Modifies nothing when it throws.
void open_schema(sqlite3* db, const std::string& path, const Options& options);

struct Store::Impl {
  Impl(std::string path, Options options);
  ~Impl();

  /// Journals the events: publish's durability point; the mover takes them from there.
  void append(std::span<const Envelope> events);
  /// The newest sequence (0: none). Caller holds db_mu.
  std::int64_t head() CRIER_REQUIRES(db_mu);
  /// Events journaled by this store and not yet in the database.
  std::uint64_t backlog() const noexcept { return journal_ ? journal_->backlog() : 0; }
  /// Waits until everything journaled so far is in the database (or moving it fails).
  void wait_moved();
  /// Events in journal files of processes that ended, not yet in the database. A file is
  /// read once (a dead process's file no longer changes; it goes when a store finishes it).
  std::uint64_t orphaned_events();
  /// Stored events of `event_type` that `subscriber` has not finished (see Store::backlog).
  std::uint64_t unfinished(std::string_view subscriber, std::string_view event_type);
  /// The events of a type after a subscriber's cursor: how many, and the first (0: none).
  struct Unread {
    std::uint64_t events = 0;
    std::int64_t first = 0;
  };
  /// Unread events, counted incrementally (UnreadCount). Caller holds db_mu, in a snapshot.
  Unread unread(std::string_view subscriber, std::string_view event_type) CRIER_REQUIRES(db_mu);
  /// Events of a type in (after, upto]: how many; the first (0: none). Caller holds db_mu.
  std::uint64_t count_of_type(std::string_view event_type, std::int64_t after, std::int64_t upto) CRIER_REQUIRES(db_mu);
  std::int64_t first_of_type(std::string_view event_type, std::int64_t after, std::int64_t upto) CRIER_REQUIRES(db_mu);
  /// Stops the mover after it moved what it can; deletes the journal if it is all moved.
  void shutdown() noexcept;
  /// Waits until someone (this process or another) may have committed since `seen`, or
  /// `deadline`, or `stop()` is true. Returns the current change count.
  template <class Stop>
  std::uint64_t wait_change(std::uint64_t seen, std::chrono::steady_clock::time_point deadline, Stop stop);
  /// Something was committed: wakes every wait_change.
  void note_change();
  /// Wakes every wait_change (a consumer is closing).
  void wake_all();
  std::uint64_t prune(const Retention& rules);
  /// Throws Errc::invalid_argument saying `what` cannot be done: the store is read-only.
  void refuse_if_read_only(std::string_view what) const;
  /// Within the caller's transaction (db_mu held): turns dead letter `id` back into a retry
  /// due now, with `edited` data if given (else the data of an earlier edit, if any), and
  /// deletes it. False when there is no such letter.
  bool redrive_letter(std::int64_t id, const std::string* edited) CRIER_REQUIRES(db_mu);

  const std::string path;
  const Options options;
  /// The largest event append takes (Options::max_event_bytes, within what SQLite stores in
  /// one row); set at open.
  std::uint64_t max_event_bytes = 0;

  Mutex db_mu;
  sqlite3* db CRIER_GUARDED_BY(db_mu) = nullptr;
  std::optional<StmtCache> stmts CRIER_GUARDED_BY(db_mu);  // db's statements, for reuse
  Stmt insert_event CRIER_GUARDED_BY(db_mu);
  Stmt save_progress CRIER_GUARDED_BY(db_mu);  // a journal's next_jseq

  // The events stored per type, as the inspector last counted them: a tool that looks every
  // second (the dashboard) then counts only the events stored since, not the whole store. A
  // prune (in any process: it bumps crier_meta's 'prunes') or a changed first event starts
  // the count again.
  struct TypeCounts {
    std::map<std::string, std::pair<std::uint64_t, std::int64_t>> by_type;  // events, newest seq
    std::int64_t counted_to = 0;  // every event up to this sequence is counted
    std::string prunes;           // crier_meta's 'prunes' when counted
    std::int64_t first = 0;       // the oldest event's sequence when counted
  };
  TypeCounts type_counts CRIER_GUARDED_BY(db_mu);
  // A subscriber's unread events as last counted: those of its type in (cursor, head]. Counted
  // again from there, only the events its cursor passed and those stored since are read (a
  // subscriber far behind cost a scan of everything after its cursor at each look). Events
  // after a cursor are never deleted (a prune stops at the lowest cursor); a cursor moved
  // back, or past the head counted, and a subscriber without one are counted afresh.
  struct UnreadCount {
    std::int64_t cursor = 0, head = 0;
    Unread unread;
  };
  std::map<std::pair<std::string, std::string>, UnreadCount> unread_counts CRIER_GUARDED_BY(db_mu);

  // Change notification: local commits bump `changes` at once; commits by other connections
  // when the change watch sees them (it sees local ones too: a spurious wake-up is harmless).
  Mutex change_mu;
  CondVar change_cv;
  std::atomic<std::uint64_t> changes{0};
  std::unique_ptr<ChangeWatch> watch;

  std::atomic<std::uint64_t> commits{0};
  std::atomic<std::uint64_t> appended{0};

 private:
  void mover_loop();
  // Inserts the records in one transaction and records `progress` as the journal's next
  // sequence. Caller holds db_mu.
  void insert_records(const std::vector<RecordView>& records, const std::string& journal, std::uint64_t progress)
      CRIER_REQUIRES(db_mu);
  // Deletes the progress row of a journal file that was deleted.
  void forget_journal(const std::string& name) noexcept;
  // Finishes a dead process's journal; true when it is all in the database.
  bool finish_orphan(const std::string& name, std::string_view bytes);
  // The records of journal file `name` (its `bytes`) not yet in the database, in journal
  // order, each once; `progress` is then the file's next sequence. Caller holds db_mu.
  std::vector<RecordView> unmoved_records(const std::string& name, std::string_view bytes, std::uint64_t& progress)
      CRIER_REQUIRES(db_mu);
  // Wakes consumers after a commit of events, and prunes every so many commits.
  void after_commit();

  // Stops the change watch, finalizes the statements and closes the connection.
  // Only when the store is being built or destroyed: no other thread can use it then.
  void close_connection() noexcept CRIER_NO_THREAD_SAFETY_ANALYSIS;
  // Publishes fail fast while the store is closing or the mover cannot write the database.
  void refuse_if_needed() const;

  std::unique_ptr<Journal> journal_;
  // orphaned_events' counts by journal file name: its size when counted, and the count.
  Mutex orphans_mu_;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> orphan_counts_ CRIER_GUARDED_BY(orphans_mu_);
  std::thread mover_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> refusing_{false};  // stopping_, or mover_error_ is set
  mutable Mutex error_mu_;
  std::string mover_error_ CRIER_GUARDED_BY(error_mu_);  // why the last move failed ("" when it worked)
  Errc mover_code_ = Errc::transport_error;
};

template <class Stop>
std::uint64_t Store::Impl::wait_change(std::uint64_t seen, std::chrono::steady_clock::time_point deadline, Stop stop) {
  MutexLock lock(change_mu);
  while (changes.load(std::memory_order_acquire) == seen && !stop() && change_cv.wait_until(change_mu, deadline)) {
  }
  return changes.load(std::memory_order_acquire);
}

}  // namespace crier::sqlite
