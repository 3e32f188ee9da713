// A thin RAII layer over the SQLite C API: a connection, prepared statements, and errors that
// say which file and what went wrong.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crier/error.hpp"

namespace crier::sqlite {

/// Error(code) "<path>: <what>: <SQLite's message>" for the connection's last error.
[[noreturn]] void fail(sqlite3* db, const std::string& path, std::string_view what, Errc code = Errc::transport_error);

/// Opens a connection to `path` (sqlite3_open_v2 `flags`) with extended result codes and the
/// busy timeout. Throws Error(transport_error) saying why it cannot.
sqlite3* open_connection(const std::string& path, int flags, std::chrono::milliseconds busy_timeout);

class StmtCache;

/// A prepared statement, reset after each use.
class Stmt {
 public:
  Stmt() = default;
  /// Prepares `sql` on `db`; finalized when this goes.
  Stmt(sqlite3* db, const std::string& path, std::string_view sql);
  /// A statement of `cache` for `sql` (prepared on first use, or when the cache's are all in
  /// use), given back to it, reset, when this goes.
  Stmt(StmtCache& cache, std::string_view sql);
  ~Stmt();
  Stmt(Stmt&& o) noexcept
      : db_(o.db_), path_(o.path_), stmt_(std::exchange(o.stmt_, nullptr)), home_(std::exchange(o.home_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(db_, o.db_);
    std::swap(path_, o.path_);
    std::swap(stmt_, o.stmt_);
    std::swap(home_, o.home_);
    return *this;
  }

  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& bind_blob(int i, std::string_view v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  /// Steps once: true when a row is ready. Throws on error (after resetting).
  bool step();
  /// Steps to the end (a statement without rows) and resets.
  void run() {
    while (step()) {
    }
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  /// The column's storage class: SQLITE_INTEGER, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL...
  int kind(int col) const { return sqlite3_column_type(stmt_, col); }
  /// A TEXT or BLOB column's bytes as stored, valid until the next step or reset.
  std::string_view bytes(int col) const {
    const void* p = kind(col) == SQLITE_TEXT ? static_cast<const void*>(sqlite3_column_text(stmt_, col))
                                             : sqlite3_column_blob(stmt_, col);
    return p ? std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string_view();
  }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }
  std::string blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
  }

 private:
  sqlite3* db_ = nullptr;
  const std::string* path_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  std::vector<sqlite3_stmt*>* home_ = nullptr;  // the cache's free statements of this SQL, if cached
};

/// The prepared statements of one connection, kept for reuse by their SQL text: preparing a
/// short statement costs more than running it (a subscriber's claims, preparing theirs every
/// time, spent 40% of its CPU in it). Used under the connection's lock, as the connection is;
/// goes after every Stmt taken from it and before the connection is closed.
class StmtCache {
 public:
  StmtCache(sqlite3* db, const std::string& path) : db_(db), path_(&path) {}
  ~StmtCache();
  StmtCache(const StmtCache&) = delete;
  StmtCache& operator=(const StmtCache&) = delete;

 private:
  friend class Stmt;
  sqlite3* db_;
  const std::string* path_;
  std::map<std::string, std::vector<sqlite3_stmt*>, std::less<>> free_;
};

/// Runs SQL without results (several statements allowed). Throws naming `what`.
void exec(sqlite3* db, const std::string& path, std::string_view sql, std::string_view what);

/// A transaction on a connection: BEGIN IMMEDIATE (the write lock up front, so two processes
/// never deadlock upgrading), rolled back unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& path);
  ~Transaction();
  void commit();

 private:
  sqlite3* db_;
  const std::string& path_;
  bool done_ = false;
};

/// A read transaction: the statements run while it lasts read one snapshot of the file, so
/// that counts taken by several of them agree. Ended when it goes; its statements must be
/// reset first (made after it, they are).
class ReadSnapshot {
 public:
  ReadSnapshot(sqlite3* db, const std::string& path);
  ~ReadSnapshot();
  ReadSnapshot(const ReadSnapshot&) = delete;
  ReadSnapshot& operator=(const ReadSnapshot&) = delete;

 private:
  sqlite3* db_;
};

}  // namespace crier::sqlite
