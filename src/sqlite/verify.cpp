// Store::verify(): the file's structure by SQLite, every event's contents by its checksum.
#include "store_impl.hpp"

namespace crier::sqlite {

VerifyResult Store::verify() {
  const Impl& s = *impl_;
  VerifyResult result;
  sqlite3* db = open_connection(s.path, SQLITE_OPEN_READONLY, s.options.busy_timeout);
  struct Close {
    sqlite3* db;
    ~Close() { sqlite3_close(db); }
  } close{db};
  exec(db, s.path, "BEGIN", "starting a read transaction");  // one snapshot for both checks
  {
    constexpr int kMaxStructureFindings = 100;
    Stmt check(db, s.path, "PRAGMA integrity_check(" + std::to_string(kMaxStructureFindings) + ")");
    while (check.step()) {
      const std::string line = check.text(0);
      if (line != "ok") result.problems.push_back("structure: " + line);
    }
  }
  Stmt events(db, s.path, "SELECT " + std::string(kEventColumns) + " FROM crier_events e ORDER BY e.seq");
  std::int64_t last = 0;
  try {
    while (events.step()) {
      last = events.int64(0);
      ++result.events;
      const std::string damage = row_damage(events, 0);
      if (damage.empty()) continue;
      result.corrupt.push_back(static_cast<std::uint64_t>(last));
      result.problems.push_back("sequence " + std::to_string(last) + ": " + damage);
    }
  } catch (const Error& e) {
    result.problems.push_back("cannot read the events after sequence " + std::to_string(last) + ": " + e.message());
  }
  return result;
}

}  // namespace crier::sqlite
