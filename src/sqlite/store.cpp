// The SQLite store: opening, journaled publish and the mover, dead letters and retention.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "common/thread_name.hpp"
#include "store_impl.hpp"

namespace crier::sqlite {

namespace {

// Switching to WAL takes the write lock from within a read, which SQLite refuses at once (its
// busy handler would deadlock there) while another connection holds it: another process making
// the schema of the same new store, say. So it is tried again, for up to busy_timeout.
void switch_to_wal(sqlite3* db, const std::string& path, std::chrono::milliseconds busy_timeout) {
  const auto deadline = std::chrono::steady_clock::now() + busy_timeout;
  auto pause = std::chrono::milliseconds(1);
  while (sqlite3_exec(db, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr) != SQLITE_OK) {
    if ((sqlite3_errcode(db) & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() + pause > deadline)
      fail(db, path, "switching to WAL");
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

Timestamp from_text(const std::string& text) {
  try {
    return text.empty() ? Timestamp{} : parse_time(text);
  } catch (const Error&) {
    return Timestamp{};
  }
}

// The WHERE clause and its arguments for a dead-letter filter (ids are checked after).
struct LetterQuery {
  std::string where = " WHERE 1";
  std::vector<std::string> args;
  explicit LetterQuery(const DeadLetterFilter& f) {
    if (!f.subscriber.empty()) {
      where += " AND d.subscriber = ?" + std::to_string(args.size() + 1);
      args.push_back(f.subscriber);
    }
    if (!f.event_type.empty()) {
      where += " AND d.type = ?" + std::to_string(args.size() + 1);
      args.push_back(f.event_type);
    }
  }
  void bind(Stmt& s) const {
    for (std::size_t i = 0; i < args.size(); ++i) s.bind(static_cast<int>(i + 1), args[i]);
  }
  static bool wanted(const DeadLetterFilter& f, std::uint64_t id) {
    return f.ids.empty() || std::find(f.ids.begin(), f.ids.end(), id) != f.ids.end();
  }
};

// What a row keeps besides an event's fields (see max_event_bytes).
constexpr std::uint64_t kRowRoom = 64 << 10;

// An event's bytes as a row holds them: its fields together.
std::uint64_t record_bytes(const RecordView& r) {
  return r.id.size() + r.type.size() + r.source.size() + r.time.size() + r.datacontenttype.size() +
         r.dataschema.size() + r.subject.size() + r.extensions.size() + r.data.size();
}

}  // namespace

Store::Impl::Impl(std::string p, Options o) : path(std::move(p)), options(std::move(o)) {
  if (options.read_only) {  // the file only, as it is: no schema, WAL switch, journal or mover
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw Error(Errc::invalid_argument, path + ": is a directory, not a store file");
    if (!std::filesystem::is_regular_file(path, ec))
      throw Error(Errc::not_found, path + ": no such store file" + (ec ? " (" + ec.message() + ")" : ""));
    db = open_connection(path, SQLITE_OPEN_READONLY, options.busy_timeout);
    stmts.emplace(db, path);
    try {
      register_row_functions(db, path);
      open_schema(db, path, options);
    } catch (const Error& e) {
      const int rc = sqlite3_errcode(db) & 0xff;
      close_connection();
      // A reader of a WAL file shares its -shm index with the writers; SQLite creates it when
      // no process has the store open, which a user who may not write the directory cannot.
      if ((rc == SQLITE_READONLY || rc == SQLITE_CANTOPEN) && !std::filesystem::exists(path + "-shm", ec))
        throw Error(Errc::store_error, e.message() +
                                           "; to read the store while no process has it open, SQLite must create " +
                                           path + "-shm beside it, which this user may not (look as a user who may " +
                                           "write that directory, at a copy where you may, or while a process of " +
                                           "the bus has it open)");
      throw;
    } catch (...) {
      close_connection();
      throw;
    }
    return;
  }
  db = open_connection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, options.busy_timeout);
  stmts.emplace(db, path);
  try {
    register_row_functions(db, path);
    open_schema(db, path, options);
    switch_to_wal(db, path, options.busy_timeout);
    exec(db, path, options.durability == Durability::full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
         "setting the durability level");
    // SQLite refuses a row longer than its length limit: an event it could never store must
    // be refused before it is journaled and acknowledged (64 KiB kept for the row's other
    // columns and its record header).
    const auto sqlite_most = static_cast<std::uint64_t>(sqlite3_limit(db, SQLITE_LIMIT_LENGTH, -1));
    max_event_bytes = sqlite_most > kRowRoom ? sqlite_most - kRowRoom : sqlite_most;
    if (options.max_event_bytes > 0) max_event_bytes = std::min(max_event_bytes, options.max_event_bytes);
    if (options.max_bytes > 0) {
      Stmt page(db, path, "PRAGMA page_size");
      const std::int64_t page_size = page.step() ? page.int64(0) : 4096;
      exec(db, path,
           "PRAGMA max_page_count = " + std::to_string(std::max<std::uint64_t>(1, options.max_bytes / page_size)),
           "setting max_bytes");
    }
    insert_event = Stmt(db, path, kInsertEvent);
    save_progress = Stmt(db, path,
                         "INSERT INTO crier_journals (name, next_jseq) VALUES (?1, ?2) "
                         "ON CONFLICT DO UPDATE SET next_jseq = ?2");
    watch = std::make_unique<ChangeWatch>(path, options.busy_timeout, [this] { note_change(); });
    // Events a killed process journaled but did not move are stored before anyone reads.
    recover_orphans(path + "-journal.d",
                    [this](const std::string& n, std::string_view b) { return finish_orphan(n, b); });
    Journal::Limits limits;
    limits.sync_each = options.durability == Durability::full;
    // Four files of up to 64 MiB, so that the mover deletes a file well before the bound.
    limits.file_bytes = std::clamp<std::uint64_t>(options.max_journal_bytes / 4 / 4096 * 4096, 1 << 20, 64 << 20);
    limits.max_files =
        static_cast<std::size_t>((options.max_journal_bytes + limits.file_bytes - 1) / limits.file_bytes);
    limits.wait_for_room = options.busy_timeout;
    journal_ = std::make_unique<Journal>(path + "-journal.d", limits);
    mover_ = std::thread([this] {
      crier::detail::name_this_thread("crier-journal");
      mover_loop();
    });
  } catch (...) {
    close_connection();
    throw;
  }
}

Store::Impl::~Impl() {
  shutdown();
  close_connection();
}

void Store::Impl::close_connection() noexcept {
  watch.reset();
  insert_event = Stmt();
  save_progress = Stmt();
  stmts.reset();
  sqlite3_close(db);
}

void Store::Impl::shutdown() noexcept {
  {
    MutexLock lock(error_mu_);  // the mover sets refusing_ under it too
    if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
    refusing_.store(true, std::memory_order_release);
  }
  if (!journal_) return;
  journal_->stop_waits();
  if (mover_.joinable()) mover_.join();
  // When all of it is in the database, the journal and its progress rows go; otherwise it
  // stays, and the next store to open the file finishes it.
  for (const std::string& name : journal_->close()) forget_journal(name);
}

void Store::Impl::forget_journal(const std::string& name) noexcept {
  try {
    MutexLock lock(db_mu);
    Stmt del(*stmts, "DELETE FROM crier_journals WHERE name = ?1");
    del.bind(1, name);
    del.run();
  } catch (const Error&) {
    // A stale progress row names a file that no longer exists: harmless.
  }
}

std::int64_t Store::Impl::head() {
  Stmt q(*stmts, "SELECT max(seq) FROM crier_events");
  return q.step() && !q.is_null(0) ? q.int64(0) : 0;
}

void Store::Impl::refuse_if_needed() const {
  if (!refusing_.load(std::memory_order_acquire)) return;
  if (stopping_.load(std::memory_order_acquire))
    throw Error(Errc::transport_error, path + ": the store is closing; the event was not stored");
  MutexLock lock(error_mu_);
  if (!mover_error_.empty())  // the database refuses events: do not pile up more
    throw Error(mover_code_, "publish not stored: " + mover_error_ + "; " + std::to_string(backlog()) +
                                 " acknowledged events wait in the journal and are not lost");
}

void Store::Impl::append(std::span<const Envelope> events) {
  refuse_if_needed();
  thread_local std::vector<std::string> extensions;
  thread_local std::vector<RecordView> records;
  extensions.resize(std::max(extensions.size(), events.size()));
  records.clear();
  for (std::size_t i = 0; i < events.size(); ++i) {
    encode_extensions(events[i], extensions[i]);
    records.push_back(view_of(events[i], extensions[i]));
    if (const std::uint64_t size = record_bytes(records.back()); size > max_event_bytes)
      throw Error(Errc::invalid_argument, path + ": event " + events[i].id + " is " + std::to_string(size) +
                                              " bytes (data and attributes); this store takes at most " +
                                              std::to_string(max_event_bytes) +
                                              " (Options::max_event_bytes, and what SQLite stores in one row). "
                                              "Nothing of this publish was stored");
  }
  journal_->append(records);
  appended.fetch_add(events.size(), std::memory_order_relaxed);
}

void Store::Impl::mover_loop() {
  // Records go into the database in journal order, so that a journal's progress is one number.
  constexpr std::size_t kMaxBatch = 16384;
  constexpr auto kScanEvery = std::chrono::milliseconds(500);
  // At Durability::full every commit syncs the database, and competes for the disk with the
  // publishers' journal syncs, which are what publish waits for: so the mover commits at most
  // this often, unless it is falling behind (measured: +20% publish rate at 64 threads).
  constexpr auto kFullCommitEvery = std::chrono::milliseconds(2);
  const bool pace = options.durability == Durability::full;
  // Once the database refused (a full disk), a try moves one record, and each success doubles
  // that; a failure waits twice as long as the last one, until a full batch (or all that was
  // journaled) went in. So a store on a full disk with events to move costs next to nothing,
  // and one where a little space comes back does not try 16,384 records at a time.
  constexpr auto kFirstRetry = std::chrono::milliseconds(100);
  constexpr auto kMaxRetry = std::chrono::milliseconds(1000);
  auto retry_in = kFirstRetry;
  std::size_t batch_limit = kMaxBatch;
  auto last_scan = std::chrono::steady_clock::now();
  Journal::Batch batch;
  for (;;) {
    bool failing;
    {
      MutexLock lock(error_mu_);
      failing = !mover_error_.empty();
    }
    const bool stop = stopping_.load(std::memory_order_acquire);
    if (journal_->take(batch, batch_limit)) {
      try {
        {
          MutexLock lock(db_mu);
          if (!batch.records.empty()) insert_records(batch.records, batch.file, batch.progress);
        }
        journal_->moved(batch);
        if (batch.finishes_file) forget_journal(batch.file);  // the file is gone
        if (failing) {
          MutexLock lock(error_mu_);
          mover_error_.clear();
          refusing_.store(stopping_.load(std::memory_order_acquire), std::memory_order_release);
        }
        if (!batch.records.empty()) after_commit();
        failing = false;
        batch_limit = std::min(batch_limit * 2, kMaxBatch);
        if (batch_limit == kMaxBatch || journal_->backlog() == 0) retry_in = kFirstRetry;
        if (pace && !stop && batch.records.size() < kMaxBatch) journal_->pause(kFullCommitEvery);
      } catch (const Error& e) {
        // The events are safe in the journal; publishes are refused until this works again.
        MutexLock lock(error_mu_);
        mover_error_ = e.message();
        mover_code_ = e.code();
        refusing_.store(true, std::memory_order_release);
        failing = true;
        batch_limit = 1;
      }
    } else if (!stop) {
      journal_->wait(kScanEvery);
    } else {
      std::this_thread::yield();  // closing: a writer is finishing its record
    }
    if (stop && (failing || journal_->backlog() == 0)) return;
    if (failing) {  // before trying the database again
      journal_->pause(retry_in);
      retry_in = std::min(retry_in * 2, kMaxRetry);
    }
    try {
      journal_->prepare();
    } catch (const Error&) {
      // Writers make room themselves, and report what fails there.
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_scan >= kScanEvery) {  // a process may have died with journaled events
      last_scan = now;
      recover_orphans(journal_->dir(),
                      [this](const std::string& n, std::string_view b) { return finish_orphan(n, b); });
    }
  }
}

void Store::Impl::insert_records(const std::vector<RecordView>& records, const std::string& journal,
                                 std::uint64_t progress) {
  // A store file deleted or moved while open (by an operator, a clean-up job): the events stay
  // in the journal, and publishes are refused saying so. Looked at before (nothing goes into a
  // file no one opens again) and after a failure (one deleted meanwhile fails the transaction
  // with SQLite's "disk I/O error").
  const auto refuse_if_moved = [this, handle = db] {
    int moved = 0;
    if (sqlite3_file_control(handle, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved != 0)
      throw Error(Errc::store_error, path + ": the store file was deleted or moved while open; events are no " +
                                         "longer moved into it, and go into a store opened at this path again");
  };
  refuse_if_moved();
  try {
    Transaction t(db, path);
    const std::int64_t now = wall_ms();
    std::int64_t seq = head();
    for (const RecordView& r : records) insert_event_row(insert_event, r, ++seq, now);
    save_progress.bind(1, journal).bind(2, static_cast<std::int64_t>(progress));
    save_progress.run();
    t.commit();
  } catch (const Error&) {
    refuse_if_moved();
    throw;
  }
}

std::vector<RecordView> Store::Impl::unmoved_records(const std::string& name, std::string_view bytes,
                                                     std::uint64_t& progress) {
  std::vector<RecordView> records = scan_records(bytes);
  std::sort(records.begin(), records.end(), [](const RecordView& a, const RecordView& b) { return a.jseq < b.jseq; });
  progress = 1;
  {
    Stmt q(*stmts, "SELECT next_jseq FROM crier_journals WHERE name = ?1");
    q.bind(1, name);
    if (q.step()) progress = static_cast<std::uint64_t>(q.int64(0));
  }
  std::vector<RecordView> missing;
  for (const RecordView& r : records) {
    if (r.jseq < progress) continue;  // in the database already, or a duplicate
    missing.push_back(r);
    progress = r.jseq + 1;
  }
  return missing;
}

bool Store::Impl::finish_orphan(const std::string& name, std::string_view bytes) {
  try {
    MutexLock lock(db_mu);
    std::uint64_t progress = 0;
    const std::vector<RecordView> missing = unmoved_records(name, bytes, progress);
    insert_records(missing, name, progress);
  } catch (const Error&) {
    return false;  // try again later
  }
  after_commit();
  return true;
}

std::uint64_t Store::Impl::orphaned_events() {
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> counts;  // the files there now
  std::uint64_t n = 0;
  look_at_orphans(path + "-journal.d", [&](const std::string& name, std::uint64_t size, const auto& read) {
    std::optional<std::uint64_t> count;
    {
      MutexLock lock(orphans_mu_);
      auto it = orphan_counts_.find(name);
      if (it != orphan_counts_.end() && it->second.first == size) count = it->second.second;
    }
    if (!count) {
      const std::string bytes = read();
      MutexLock lock(db_mu);
      std::uint64_t progress = 0;
      count = unmoved_records(name, bytes, progress).size();
    }
    counts.emplace(name, std::pair{size, *count});
    n += *count;
  });
  MutexLock lock(orphans_mu_);
  orphan_counts_ = std::move(counts);
  return n;
}

void Store::Impl::after_commit() {
  const std::uint64_t n = commits.fetch_add(1, std::memory_order_relaxed) + 1;
  note_change();
  const Retention& r = options.retention;
  if (r.every_commits > 0 && (r.max_age.count() > 0 || r.max_events > 0) && n % r.every_commits == 0) {
    try {
      prune(r);
    } catch (const Error&) {
      // Pruning is housekeeping: the next round tries again.
    }
  }
}

std::uint64_t Store::Impl::unfinished(std::string_view subscriber, std::string_view event_type) {
  if (backlog() != 0) wait_moved();  // journaled events count once they are in the database
  MutexLock lock(db_mu);
  const ReadSnapshot snapshot(db, path);
  const std::uint64_t unread_events = unread(subscriber, event_type).events;
  Stmt q(*stmts, "SELECT (SELECT count(*) FROM crier_retries WHERE subscriber = ?1 AND type = ?2) + " +
                     std::string(kHeldUnsettled));
  q.bind(1, subscriber).bind(2, event_type);
  return unread_events + (q.step() ? static_cast<std::uint64_t>(q.int64(0)) : 0);
}

std::uint64_t Store::Impl::count_of_type(std::string_view event_type, std::int64_t after, std::int64_t upto) {
  if (upto <= after) return 0;
  Stmt q(*stmts, "SELECT count(*) FROM crier_events WHERE seq > ?1 AND seq <= ?2 AND type = ?3");
  q.bind(1, after).bind(2, upto).bind(3, event_type);
  return q.step() ? static_cast<std::uint64_t>(q.int64(0)) : 0;
}

std::int64_t Store::Impl::first_of_type(std::string_view event_type, std::int64_t after, std::int64_t upto) {
  Stmt q(*stmts, "SELECT min(seq) FROM crier_events WHERE seq > ?1 AND seq <= ?2 AND type = ?3");
  q.bind(1, after).bind(2, upto).bind(3, event_type);
  return q.step() && !q.is_null(0) ? q.int64(0) : 0;
}

Store::Impl::Unread Store::Impl::unread(std::string_view subscriber, std::string_view event_type) {
  std::int64_t cursor = 0;
  bool known = false;  // without a cursor, pruning does not wait for it: counted afresh
  {
    Stmt q(*stmts, "SELECT position FROM crier_cursors WHERE subscriber = ?1 AND type = ?2");
    q.bind(1, subscriber).bind(2, event_type);
    known = q.step();
    if (known) cursor = q.int64(0);
  }
  const std::int64_t top = head();  // every event up to it is committed: sequences go in order
  auto [it, fresh] = unread_counts.try_emplace({std::string(subscriber), std::string(event_type)});
  UnreadCount& c = it->second;
  Unread& u = c.unread;
  if (fresh || !known || cursor < c.cursor || cursor > c.head) {
    u.events = count_of_type(event_type, cursor, top);
    u.first = u.events > 0 ? first_of_type(event_type, cursor, top) : 0;
  } else {
    const std::uint64_t passed = count_of_type(event_type, c.cursor, cursor);
    u.events = u.events - std::min(u.events, passed) + count_of_type(event_type, c.head, top);
    if (u.events == 0)
      u.first = 0;
    else if (u.first == 0)  // none up to the last head: the first is among the new ones
      u.first = first_of_type(event_type, std::max(cursor, c.head), top);
    else if (u.first <= cursor)  // passed
      u.first = first_of_type(event_type, cursor, top);
  }
  c.cursor = cursor;
  c.head = top;
  return u;
}

void Store::Impl::wait_moved() {
  for (;;) {
    {
      MutexLock lock(error_mu_);
      if (backlog() == 0 || !mover_error_.empty() || stopping_.load(std::memory_order_acquire)) return;
    }
    const std::uint64_t seen = changes.load(std::memory_order_acquire);
    wait_change(seen, std::chrono::steady_clock::now() + std::chrono::milliseconds(10), [] { return false; });
  }
}

void Store::Impl::note_change() {
  {
    MutexLock lock(change_mu);
    changes.fetch_add(1, std::memory_order_acq_rel);
  }
  change_cv.notify_all();
}

void Store::Impl::wake_all() {
  { MutexLock lock(change_mu); }
  change_cv.notify_all();
}

std::uint64_t Store::Impl::prune(const Retention& rules) {
  if (rules.max_age.count() <= 0 && rules.max_events == 0) return 0;
  MutexLock lock(db_mu);
  Transaction t(db, path);
  const std::int64_t top = head();
  // Everything up to `finished` is claimed by every cursor and held by no claim. The newest
  // event always stays: sequences continue from it.
  std::int64_t finished = top - 1;
  {
    Stmt q(*stmts, "SELECT min(position) FROM crier_cursors");
    if (q.step() && !q.is_null(0)) finished = std::min(finished, q.int64(0));
  }
  {
    Stmt q(*stmts, "SELECT min(first_seq) FROM crier_claims");
    if (q.step() && !q.is_null(0)) finished = std::min(finished, q.int64(0) - 1);
  }
  std::int64_t allowed = 0;
  if (rules.max_events > 0)
    allowed = std::max<std::int64_t>(allowed, top - static_cast<std::int64_t>(rules.max_events));
  if (rules.max_age.count() > 0) {
    Stmt q(*stmts, "SELECT max(seq) FROM crier_events WHERE stored_ms < ?1");
    q.bind(1, wall_ms() - rules.max_age.count());
    if (q.step() && !q.is_null(0)) allowed = std::max(allowed, q.int64(0));
  }
  const std::int64_t bound = std::min(finished, allowed);
  if (bound <= 0) return 0;
  Stmt del(*stmts,
           "DELETE FROM crier_events WHERE seq <= ?1 AND seq NOT IN (SELECT seq FROM crier_retries) "
           "AND seq NOT IN (SELECT seq FROM crier_dead_letters)");
  del.bind(1, bound);
  del.run();
  const auto n = static_cast<std::uint64_t>(sqlite3_changes(db));
  if (n > 0) {  // the inspector's counts per type start again (TypeCounts)
    Stmt mark(*stmts,
              "INSERT INTO crier_meta (key, value) VALUES ('prunes', '1') "
              "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1");
    mark.run();
  }
  t.commit();
  return n;
}

Store::Store(std::shared_ptr<Impl> impl, OpenKey) : impl_(std::move(impl)) {}
Store::~Store() = default;

const std::string& Store::path() const noexcept { return impl_->path; }

void Store::Impl::refuse_if_read_only(std::string_view what) const {
  if (options.read_only)
    throw Error(Errc::invalid_argument, path + ": " + std::string(what) + ": the store was opened read-only");
}

void Store::append(std::span<const Envelope> events) {
  impl_->refuse_if_read_only("publishing");
  if (!events.empty()) impl_->append(events);
}

std::vector<DeadLetter> Store::list(const DeadLetterFilter& filter) {
  Impl& s = *impl_;
  LetterQuery lq(filter);
  MutexLock lock(s.db_mu);
  Stmt q(*s.stmts,
         "SELECT d.id, d.subscriber, d.attempts, d.first_error, d.last_error, d.first_failure, d.last_failure, "
         "d.edited_data, " +
             std::string(kEventColumns) + " FROM crier_dead_letters d JOIN crier_events e ON e.seq = d.seq" + lq.where +
             " ORDER BY d.id");
  lq.bind(q);
  std::vector<DeadLetter> out;
  while (q.step()) {
    const auto id = static_cast<std::uint64_t>(q.int64(0));
    if (!LetterQuery::wanted(filter, id)) continue;
    DeadLetter d;
    d.id = id;
    d.subscriber = q.text(1);
    d.attempts = static_cast<int>(q.int64(2));
    d.first_error = q.text(3);
    d.last_error = q.text(4);
    d.first_failure = from_text(q.text(5));
    d.last_failure = from_text(q.text(6));
    d.envelope = read_envelope(q, 8);
    if (!q.is_null(7)) d.envelope.data = q.blob(7);
    out.push_back(std::move(d));
  }
  return out;
}

std::size_t Store::count(const DeadLetterFilter& filter) {
  if (!filter.ids.empty()) return list(filter).size();
  Impl& s = *impl_;
  LetterQuery lq(filter);
  MutexLock lock(s.db_mu);
  Stmt q(*s.stmts, "SELECT count(*) FROM crier_dead_letters d" + lq.where);
  lq.bind(q);
  return q.step() ? static_cast<std::size_t>(q.int64(0)) : 0;
}

std::size_t Store::redrive(const DeadLetterFilter& filter) {
  Impl& s = *impl_;
  s.refuse_if_read_only("redriving dead letters");
  LetterQuery lq(filter);
  std::size_t n = 0;
  {
    MutexLock lock(s.db_mu);
    Transaction t(s.db, s.path);
    Stmt q(*s.stmts, "SELECT d.id FROM crier_dead_letters d" + lq.where);
    lq.bind(q);
    std::vector<std::int64_t> ids;
    while (q.step())
      if (LetterQuery::wanted(filter, static_cast<std::uint64_t>(q.int64(0)))) ids.push_back(q.int64(0));
    for (const std::int64_t id : ids) s.redrive_letter(id, nullptr);
    n = ids.size();
    t.commit();
  }
  s.note_change();
  return n;
}

void Store::redrive_edited(std::uint64_t id, std::string data) {
  Impl& s = *impl_;
  s.refuse_if_read_only("redriving a dead letter");
  {
    MutexLock lock(s.db_mu);
    Transaction t(s.db, s.path);
    if (!s.redrive_letter(static_cast<std::int64_t>(id), &data))
      throw Error(Errc::invalid_argument, s.path + ": no dead letter " + std::to_string(id));
    t.commit();
  }
  s.note_change();
}

bool Store::Impl::redrive_letter(std::int64_t id, const std::string* edited) {
  Stmt letter(*stmts, "SELECT subscriber, type, seq, edited_data FROM crier_dead_letters WHERE id = ?1");
  letter.bind(1, id);
  if (!letter.step()) return false;
  // Back to the subscriber as a retry due now with a fresh count: any consumer of that name,
  // in any process, takes it. Edited data (now, or at an earlier redrive) goes with it.
  Stmt retry(*stmts,
             "INSERT INTO crier_retries (subscriber, type, seq, attempts, first_error, first_failure_ms, "
             "retry_at_ms, owner, expires_ms, edited_data) VALUES (?1, ?2, ?3, 0, '', 0, 0, '', 0, ?4) "
             "ON CONFLICT DO UPDATE SET attempts = 0, retry_at_ms = 0, owner = '', expires_ms = 0, "
             "edited_data = excluded.edited_data");
  const std::string subscriber = letter.text(0), type = letter.text(1);
  const std::optional<std::string> data = edited              ? std::optional(*edited)
                                          : letter.is_null(3) ? std::nullopt
                                                              : std::optional(letter.blob(3));
  retry.bind(1, subscriber).bind(2, type).bind(3, letter.int64(2));
  if (data)
    retry.bind_blob(4, *data);
  else
    retry.bind_null(4);
  retry.run();
  Stmt del(*stmts, "DELETE FROM crier_dead_letters WHERE id = ?1");
  del.bind(1, id);
  del.run();
  return true;
}

std::size_t Store::purge(const DeadLetterFilter& filter) {
  Impl& s = *impl_;
  s.refuse_if_read_only("purging dead letters");
  LetterQuery lq(filter);
  MutexLock lock(s.db_mu);
  Transaction t(s.db, s.path);
  Stmt q(*s.stmts, "SELECT d.id FROM crier_dead_letters d" + lq.where);
  lq.bind(q);
  Stmt del(*s.stmts, "DELETE FROM crier_dead_letters WHERE id = ?1");
  std::size_t n = 0;
  while (q.step()) {
    const std::int64_t id = q.int64(0);
    if (!LetterQuery::wanted(filter, static_cast<std::uint64_t>(id))) continue;
    del.bind(1, id);
    del.run();
    ++n;
  }
  t.commit();
  return n;
}

std::uint64_t Store::prune() { return prune(impl_->options.retention); }

std::uint64_t Store::prune(const Retention& rules) {
  impl_->refuse_if_read_only("pruning");
  return impl_->prune(rules);
}

StoreStats Store::stats() {
  Impl& s = *impl_;
  StoreStats st;
  st.commits = s.commits.load(std::memory_order_relaxed);
  st.appended = s.appended.load(std::memory_order_relaxed);
  st.journaled = s.backlog();
  MutexLock lock(s.db_mu);
  st.head = static_cast<std::uint64_t>(s.head());
  Stmt events(*s.stmts, "SELECT count(*) FROM crier_events");
  if (events.step()) st.events = static_cast<std::uint64_t>(events.int64(0));
  Stmt letters(*s.stmts, "SELECT count(*) FROM crier_dead_letters");
  if (letters.step()) st.dead_letters = static_cast<std::uint64_t>(letters.int64(0));
  Stmt held(*s.stmts, "SELECT (SELECT count(*) FROM crier_claims) + (SELECT count(*) FROM crier_retries)");
  if (held.step()) st.in_flight = static_cast<std::uint64_t>(held.int64(0));
  return st;
}

// A position this store printed: a positive decimal sequence.
std::int64_t parse_position(const std::string& path, std::string_view text) {
  std::int64_t seq = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seq);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || seq <= 0)
    throw Error(Errc::invalid_argument,
                path + ": '" + std::string(text) + "' is not a position of this store (a sequence number, 1 or more)");
  return seq;
}

std::uint64_t Store::backlog(std::string_view subscriber, std::string_view event_type) {
  return impl_->unfinished(subscriber, event_type);
}

namespace {

// Says in words why a store cannot be opened or written at `path`, before SQLite would say
// only "unable to open database file". The store writes its file, a WAL and shared-memory
// file and a journal directory beside it, so both the file and its directory must be
// writable.
void check_writable(const std::string& path) {
  auto fail = [&](const std::string& why) {
    throw Error(Errc::transport_error, path + ": cannot open the store: " + why);
  };
  const std::filesystem::path p(path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : std::string(".");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("it is a directory, not a file");
    if (::access(path.c_str(), R_OK | W_OK) != 0)
      fail(errno == EROFS ? "the file system is read-only"
                          : "the file is read-only for this user (" + std::string(std::strerror(errno)) +
                                "): the store writes to it");
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      fail("the directory " + dir + " is read-only for this user (" + std::strerror(errno) +
           "): the store needs to create its journal and WAL files there");
    return;
  }
  if (errno != ENOENT) fail(std::strerror(errno));
  if (::stat(dir.c_str(), &st) != 0) fail("no such directory: " + dir);
  if (!S_ISDIR(st.st_mode)) fail(dir + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) fail("cannot create the file in " + dir + ": " + std::strerror(errno));
}

}  // namespace

std::shared_ptr<Store> open(const std::string& path, const Options& options) {
  if (path.empty()) throw Error(Errc::invalid_argument, "crier::sqlite::open: the path is empty");
  if (!options.read_only) check_writable(path);
  if (options.window == 0) throw Error(Errc::invalid_argument, path + ": options.window must be at least 1");
  if (options.lease.count() <= 0) throw Error(Errc::invalid_argument, path + ": options.lease must be positive");
  return std::make_shared<Store>(std::make_shared<Store::Impl>(path, options), Store::OpenKey{});
}

void register_scheme() {
  auto opener = [](const std::string& target, const OpenOptions& how) -> std::shared_ptr<Transport> {
    const std::string prefix = "sqlite://";
    Options options;
    options.read_only = how.read_only;
    const std::string path = target.rfind(prefix, 0) == 0 ? target.substr(prefix.size()) : target;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))  // the tools look at stores; they make none
      throw Error(Errc::not_found, path + ": no such store file");
    return open(path, options);
  };
  register_transport("file", opener);
  register_transport("sqlite", opener);
}

}  // namespace crier::sqlite
