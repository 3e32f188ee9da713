#include "db.hpp"

namespace crier::sqlite {

void fail(sqlite3* db, const std::string& path, std::string_view what, Errc code) {
  const int rc = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string why = db ? sqlite3_errmsg(db) : "out of memory";
  switch (rc & 0xff) {
    case SQLITE_FULL:
      why += " (the disk or the store's max_bytes is full)";
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      why += " (another connection held the write lock past busy_timeout)";
      break;
    case SQLITE_READONLY:
      why += " (the file or its directory is read-only)";
      break;
    case SQLITE_NOTADB:
      code = Errc::store_error;
      why += " (not a SQLite database)";
      break;
    case SQLITE_CORRUPT:
      code = Errc::store_error;
      why += " (the file is corrupt)";
      break;
    default:
      break;
  }
  throw Error(code, path + ": " + std::string(what) + ": " + why);
}

sqlite3* open_connection(const std::string& path, int flags, std::chrono::milliseconds busy_timeout) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    const std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw Error(Errc::transport_error, path + ": cannot open: " + why);
  }
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
  sqlite3_extended_result_codes(db, 1);
  return db;
}

Stmt::Stmt(sqlite3* db, const std::string& path, std::string_view sql) : db_(db), path_(&path) {
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) !=
      SQLITE_OK)
    fail(db, path, "preparing " + std::string(sql.substr(0, 40)));
}

Stmt::Stmt(StmtCache& cache, std::string_view sql) : db_(cache.db_), path_(cache.path_) {
  auto it = cache.free_.find(sql);
  if (it == cache.free_.end()) it = cache.free_.emplace(std::string(sql), std::vector<sqlite3_stmt*>()).first;
  home_ = &it->second;
  if (!home_->empty()) {
    stmt_ = home_->back();
    home_->pop_back();
    return;
  }
  if (sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) !=
      SQLITE_OK)
    fail(db_, *path_, "preparing " + std::string(sql.substr(0, 40)));
}

Stmt::~Stmt() {
  if (home_ == nullptr || stmt_ == nullptr) {
    sqlite3_finalize(stmt_);
    return;
  }
  reset();  // ends a read it was in, and lets go of the bound values
  home_->push_back(stmt_);
}

StmtCache::~StmtCache() {
  for (auto& [sql, stmts] : free_)
    for (sqlite3_stmt* s : stmts) sqlite3_finalize(s);
}

bool Stmt::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  const std::string sql = sqlite3_sql(stmt_) ? std::string(sqlite3_sql(stmt_)).substr(0, 40) : std::string();
  sqlite3_reset(stmt_);
  fail(db_, *path_, sql);
}

void exec(sqlite3* db, const std::string& path, std::string_view sql, std::string_view what) {
  if (sqlite3_exec(db, std::string(sql).c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) fail(db, path, what);
}

Transaction::Transaction(sqlite3* db, const std::string& path) : db_(db), path_(path) {
  exec(db, path, "BEGIN IMMEDIATE", "starting a transaction");
}

ReadSnapshot::ReadSnapshot(sqlite3* db, const std::string& path) : db_(db) {
  exec(db, path, "BEGIN", "starting a read");
}

ReadSnapshot::~ReadSnapshot() {
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

Transaction::~Transaction() {
  if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK) {
    done_ = true;
    return;
  }
  // A failed COMMIT may leave the transaction open: roll it back so the connection is usable.
  try {
    fail(db_, path_, "commit");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    done_ = true;
    throw;
  }
}

}  // namespace crier::sqlite
