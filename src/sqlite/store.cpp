// The SQLite store: opening, group-committed publish, dead letters and retention.
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "store_impl.hpp"

namespace crier::sqlite {

namespace {

sqlite3* open_connection(const std::string& path, int flags, const Options& options) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    const std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw Error(Errc::transport_error, path + ": cannot open: " + why);
  }
  sqlite3_busy_timeout(db, static_cast<int>(options.busy_timeout.count()));
  sqlite3_extended_result_codes(db, 1);
  return db;
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

}  // namespace

Envelope read_envelope(const Stmt& row, int c) {
  Envelope e;
  e.id = row.text(c + 1);
  e.type = row.text(c + 2);
  e.source = row.text(c + 3);
  e.time = row.text(c + 4);
  e.datacontenttype = row.text(c + 5);
  e.dataschema = row.text(c + 6);
  e.subject = row.text(c + 7);
  const std::string ext = row.text(c + 8);
  if (!ext.empty() && ext != "{}") {
    auto j = nlohmann::json::parse(ext, nullptr, false);
    if (j.is_object())
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it->is_string()) e.extensions.emplace(it.key(), it->get<std::string>());
  }
  e.data = row.blob(c + 9);
  return e;
}

std::string encode_extensions(const Envelope& e) {
  return e.extensions.empty() ? std::string("{}") : nlohmann::json(e.extensions).dump();
}

Store::Impl::Impl(std::string p, Options o) : path(std::move(p)), options(std::move(o)) {
  db = open_connection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, options);
  try {
    open_schema(db, path, options);
    exec(db, path, "PRAGMA journal_mode = WAL", "switching to WAL");
    exec(db, path,
         options.durability == Durability::full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
         "setting the durability level");
    if (options.max_bytes > 0) {
      Stmt page(db, path, "PRAGMA page_size");
      const std::int64_t page_size = page.step() ? page.int64(0) : 4096;
      exec(db, path, "PRAGMA max_page_count = " + std::to_string(std::max<std::uint64_t>(1, options.max_bytes / page_size)),
           "setting max_bytes");
    }
    insert_event = Stmt(db, path,
                        "INSERT INTO crier_events (id, type, source, time, datacontenttype, dataschema, subject, "
                        "extensions, data, stored_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    watch = open_connection(path, SQLITE_OPEN_READONLY, options);
  } catch (...) {
    insert_event = Stmt();
    sqlite3_close(watch);
    sqlite3_close(db);
    throw;
  }
}

Store::Impl::~Impl() {
  insert_event = Stmt();
  sqlite3_close(watch);
  sqlite3_close(db);
}

std::int64_t Store::Impl::head() {
  Stmt q(db, path, "SELECT seq FROM sqlite_sequence WHERE name = 'crier_events'");
  return q.step() ? q.int64(0) : 0;
}

void Store::Impl::write(const std::vector<const Envelope*>& rows) {
  {
    std::lock_guard lock(db_mu);
    Transaction t(db, path);
    const std::int64_t now = wall_ms();
    for (const Envelope* e : rows) {
      const std::string ext = encode_extensions(*e);
      insert_event.bind(1, e->id)
          .bind(2, e->type)
          .bind(3, e->source)
          .bind(4, e->time)
          .bind(5, e->datacontenttype)
          .bind(6, e->dataschema)
          .bind(7, e->subject)
          .bind(8, ext)
          .bind_blob(9, e->data)
          .bind(10, now);
      insert_event.run();
    }
    t.commit();
  }
  appended.fetch_add(rows.size(), std::memory_order_relaxed);
  const std::uint64_t n = commits.fetch_add(1, std::memory_order_relaxed) + 1;
  {
    std::lock_guard lock(change_mu);
    changes.fetch_add(1, std::memory_order_acq_rel);
  }
  change_cv.notify_all();
  const Retention& r = options.retention;
  if (r.every_commits > 0 && (r.max_age.count() > 0 || r.max_events > 0) && n % r.every_commits == 0) {
    try {
      prune(r);
    } catch (const Error&) {
      // Pruning is housekeeping: the next round tries again.
    }
  }
}

void Store::Impl::wake_all() {
  { std::lock_guard lock(change_mu); }
  change_cv.notify_all();
}

std::uint64_t Store::Impl::prune(const Retention& rules) {
  if (rules.max_age.count() <= 0 && rules.max_events == 0) return 0;
  std::lock_guard lock(db_mu);
  Transaction t(db, path);
  const std::int64_t top = head();
  // Everything up to `finished` is claimed by every cursor and held by no claim.
  std::int64_t finished = top;
  {
    Stmt q(db, path, "SELECT min(position) FROM crier_cursors");
    if (q.step() && !q.is_null(0)) finished = std::min(finished, q.int64(0));
  }
  {
    Stmt q(db, path, "SELECT min(first_seq) FROM crier_claims");
    if (q.step() && !q.is_null(0)) finished = std::min(finished, q.int64(0) - 1);
  }
  std::int64_t allowed = 0;
  if (rules.max_events > 0) allowed = std::max<std::int64_t>(allowed, top - static_cast<std::int64_t>(rules.max_events));
  if (rules.max_age.count() > 0) {
    Stmt q(db, path, "SELECT max(seq) FROM crier_events WHERE stored_ms < ?1");
    q.bind(1, wall_ms() - rules.max_age.count());
    if (q.step() && !q.is_null(0)) allowed = std::max(allowed, q.int64(0));
  }
  const std::int64_t bound = std::min(finished, allowed);
  if (bound <= 0) return 0;
  Stmt del(db, path,
           "DELETE FROM crier_events WHERE seq <= ?1 AND seq NOT IN (SELECT seq FROM crier_retries) "
           "AND seq NOT IN (SELECT seq FROM crier_dead_letters)");
  del.bind(1, bound);
  del.run();
  const auto n = static_cast<std::uint64_t>(sqlite3_changes(db));
  t.commit();
  return n;
}

Store::Store(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

const std::string& Store::path() const noexcept { return impl_->path; }

void Store::append(std::span<const Envelope> events) {
  if (events.empty()) return;
  Impl& s = *impl_;
  std::unique_lock lock(s.commit_mu);
  std::shared_ptr<Impl::Batch> batch = s.open_batch;
  for (const Envelope& e : events) batch->rows.push_back(&e);
  while (!batch->done) {
    if (s.leader) {
      s.commit_cv.wait(lock);
      continue;
    }
    // Nobody is writing: lead. Our batch is the open one; the next fills while we write.
    s.leader = true;
    s.open_batch = std::make_shared<Impl::Batch>();
    lock.unlock();
    bool failed = false;
    Errc code = Errc::transport_error;
    std::string error;
    try {
      s.write(batch->rows);
    } catch (const Error& e) {
      failed = true;
      code = e.code();
      error = e.what();
    } catch (const std::exception& e) {
      failed = true;
      error = e.what();
    }
    lock.lock();
    batch->failed = failed;
    batch->code = code;
    batch->error = std::move(error);
    batch->done = true;
    s.leader = false;
    s.commit_cv.notify_all();
  }
  if (batch->failed)
    throw Error(batch->code, "publish not stored (" + batch->error + ")");
}

std::vector<DeadLetter> Store::dead_letters(const DeadLetterFilter& filter) {
  Impl& s = *impl_;
  LetterQuery lq(filter);
  std::lock_guard lock(s.db_mu);
  Stmt q(s.db, s.path,
         "SELECT d.id, d.subscriber, d.attempts, d.first_error, d.last_error, d.first_failure, d.last_failure, " +
             std::string(kEventColumns) + " FROM crier_dead_letters d JOIN crier_events e ON e.seq = d.seq" +
             lq.where + " ORDER BY d.id");
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
    d.envelope = read_envelope(q, 7);
    out.push_back(std::move(d));
  }
  return out;
}

std::size_t Store::dead_letter_count(const DeadLetterFilter& filter) {
  if (!filter.ids.empty()) return dead_letters(filter).size();
  Impl& s = *impl_;
  LetterQuery lq(filter);
  std::lock_guard lock(s.db_mu);
  Stmt q(s.db, s.path, "SELECT count(*) FROM crier_dead_letters d" + lq.where);
  lq.bind(q);
  return q.step() ? static_cast<std::size_t>(q.int64(0)) : 0;
}

std::size_t Store::redrive(const DeadLetterFilter& filter) {
  Impl& s = *impl_;
  LetterQuery lq(filter);
  std::size_t n = 0;
  {
    std::lock_guard lock(s.db_mu);
    Transaction t(s.db, s.path);
    Stmt q(s.db, s.path, "SELECT d.id, d.subscriber, d.type, d.seq FROM crier_dead_letters d" + lq.where);
    lq.bind(q);
    // Back to the subscriber as a retry due now with a fresh count: any consumer of that
    // name, in any process, takes it.
    Stmt retry(s.db, s.path,
               "INSERT INTO crier_retries (subscriber, type, seq, attempts, first_error, first_failure_ms, "
               "retry_at_ms, owner, expires_ms) VALUES (?1, ?2, ?3, 0, '', 0, 0, '', 0) "
               "ON CONFLICT DO UPDATE SET attempts = 0, retry_at_ms = 0, owner = '', expires_ms = 0");
    Stmt del(s.db, s.path, "DELETE FROM crier_dead_letters WHERE id = ?1");
    while (q.step()) {
      const std::int64_t id = q.int64(0);
      if (!LetterQuery::wanted(filter, static_cast<std::uint64_t>(id))) continue;
      const std::string sub = q.text(1), type = q.text(2);
      retry.bind(1, sub).bind(2, type).bind(3, q.int64(3));
      retry.run();
      del.bind(1, id);
      del.run();
      ++n;
    }
    t.commit();
  }
  {
    std::lock_guard lock(s.change_mu);
    s.changes.fetch_add(1, std::memory_order_acq_rel);
  }
  s.change_cv.notify_all();
  return n;
}

std::size_t Store::purge(const DeadLetterFilter& filter) {
  Impl& s = *impl_;
  LetterQuery lq(filter);
  std::lock_guard lock(s.db_mu);
  Transaction t(s.db, s.path);
  Stmt q(s.db, s.path, "SELECT d.id FROM crier_dead_letters d" + lq.where);
  lq.bind(q);
  Stmt del(s.db, s.path, "DELETE FROM crier_dead_letters WHERE id = ?1");
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

std::uint64_t Store::prune() { return impl_->prune(impl_->options.retention); }

std::uint64_t Store::prune(const Retention& rules) { return impl_->prune(rules); }

StoreStats Store::stats() {
  Impl& s = *impl_;
  StoreStats st;
  st.commits = s.commits.load(std::memory_order_relaxed);
  st.appended = s.appended.load(std::memory_order_relaxed);
  std::lock_guard lock(s.db_mu);
  st.head = static_cast<std::uint64_t>(s.head());
  Stmt events(s.db, s.path, "SELECT count(*) FROM crier_events");
  if (events.step()) st.events = static_cast<std::uint64_t>(events.int64(0));
  Stmt letters(s.db, s.path, "SELECT count(*) FROM crier_dead_letters");
  if (letters.step()) st.dead_letters = static_cast<std::uint64_t>(letters.int64(0));
  Stmt held(s.db, s.path, "SELECT (SELECT count(*) FROM crier_claims) + (SELECT count(*) FROM crier_retries)");
  if (held.step()) st.in_flight = static_cast<std::uint64_t>(held.int64(0));
  return st;
}

std::shared_ptr<Store> open(const std::string& path, const Options& options) {
  if (path.empty()) throw Error(Errc::invalid_argument, "crier::sqlite::open: the path is empty");
  if (options.window == 0) throw Error(Errc::invalid_argument, path + ": options.window must be at least 1");
  if (options.lease.count() <= 0) throw Error(Errc::invalid_argument, path + ": options.lease must be positive");
  return std::make_shared<Store>(std::make_shared<Store::Impl>(path, options));
}

}  // namespace crier::sqlite
