// What makes a SQLite file a crier store: the check on open and the forward migrations.
#include <string>
#include <vector>

#include "store_impl.hpp"

namespace crier::sqlite {

namespace {

// Migration k brings a store from schema version k to k + 1. Append only: a released
// migration is never edited.
const std::vector<std::string_view> kMigrations = {
    // 0 -> 1: the first schema.
    R"sql(
CREATE TABLE crier_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO crier_meta (key, value) VALUES ('format', 'crier'), ('schema_version', '0');
-- Every event ever published, in commit order. Append only; retention deletes the oldest.
CREATE TABLE crier_events (
  seq INTEGER PRIMARY KEY,  -- max + 1: retention always keeps the newest row
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  source TEXT NOT NULL,
  time TEXT NOT NULL,
  datacontenttype TEXT NOT NULL,
  dataschema TEXT NOT NULL,
  subject TEXT NOT NULL,
  extensions TEXT NOT NULL,
  data BLOB NOT NULL,
  stored_ms INTEGER NOT NULL);
-- How far each subscriber (name, type) has read: every event up to `position` is claimed.
CREATE TABLE crier_cursors (
  subscriber TEXT NOT NULL, type TEXT NOT NULL, position INTEGER NOT NULL,
  PRIMARY KEY (subscriber, type)) WITHOUT ROWID;
-- Events read but not yet finished, as ranges held by one consumer until `expires_ms`.
CREATE TABLE crier_claims (
  subscriber TEXT NOT NULL, type TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
  owner TEXT NOT NULL, expires_ms INTEGER NOT NULL,
  PRIMARY KEY (subscriber, type, first_seq)) WITHOUT ROWID;
-- Events that failed and wait for another attempt (or were redriven), one row each.
CREATE TABLE crier_retries (
  subscriber TEXT NOT NULL, type TEXT NOT NULL, seq INTEGER NOT NULL,
  attempts INTEGER NOT NULL, first_error TEXT NOT NULL, first_failure_ms INTEGER NOT NULL,
  retry_at_ms INTEGER NOT NULL, owner TEXT NOT NULL, expires_ms INTEGER NOT NULL,
  PRIMARY KEY (subscriber, type, seq)) WITHOUT ROWID;
CREATE TABLE crier_dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  subscriber TEXT NOT NULL, type TEXT NOT NULL, seq INTEGER NOT NULL,
  attempts INTEGER NOT NULL, first_error TEXT NOT NULL, last_error TEXT NOT NULL,
  first_failure TEXT NOT NULL, last_failure TEXT NOT NULL);
CREATE INDEX crier_dead_letters_event ON crier_dead_letters (seq);
-- How far each publish journal has been moved into crier_events: its next journal sequence.
CREATE TABLE crier_journals (name TEXT PRIMARY KEY, next_jseq INTEGER NOT NULL) WITHOUT ROWID;
)sql",
    // 1 -> 2: every event carries a checksum (see event_row.hpp); the events already stored
    // get theirs now.
    R"sql(
ALTER TABLE crier_events ADD COLUMN crc INTEGER;
UPDATE crier_events SET crc = crier_event_checksum(seq, id, type, source, time, datacontenttype, dataschema,
  subject, extensions, data, stored_ms);
)sql",
    // 2 -> 3: an operator may redrive a dead letter with edited data (edit-and-redrive); the
    // edited data travels with the retry row, and with the letter if it fails again, while
    // the stored event stays as it was for every other subscriber. And each subscriber's
    // cursor keeps when it last finished an event (its idle time, for the tools).
    R"sql(
ALTER TABLE crier_retries ADD COLUMN edited_data BLOB;
ALTER TABLE crier_dead_letters ADD COLUMN edited_data BLOB;
ALTER TABLE crier_cursors ADD COLUMN settled_ms INTEGER;
)sql",
};

std::vector<std::string> table_names(sqlite3* db, const std::string& path) {
  std::vector<std::string> names;
  Stmt q(db, path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
  while (q.step()) names.push_back(q.text(0));
  return names;
}

// The schema version of the file: 0 for an empty one. Throws for a file that is no crier store,
// a newer one, or (with `verify`) a corrupt one.
int schema_version(sqlite3* db, const std::string& path, bool verify) {
  const std::vector<std::string> tables = table_names(db, path);
  int version = 0;
  if (!tables.empty()) {
    bool has_meta = false;
    for (const auto& t : tables) has_meta = has_meta || t == "crier_meta";
    if (!has_meta) {
      std::string list;
      for (const auto& t : tables) list += (list.empty() ? "" : ", ") + t;
      throw Error(Errc::store_error, path + ": is a SQLite database but not a crier store (its tables: " + list +
                                         "); refusing to touch it");
    }
    Stmt format(db, path, "SELECT value FROM crier_meta WHERE key = 'format'");
    if (!format.step() || format.text(0) != "crier")
      throw Error(Errc::store_error, path + ": crier_meta does not say format 'crier'; refusing to touch it");
    Stmt v(db, path, "SELECT value FROM crier_meta WHERE key = 'schema_version'");
    if (!v.step()) throw Error(Errc::store_error, path + ": crier_meta has no schema_version; refusing to touch it");
    try {
      version = std::stoi(v.text(0));
    } catch (const std::exception&) {
      throw Error(Errc::store_error, path + ": schema_version '" + v.text(0) + "' is not a number");
    }
    if (version > kSchemaVersion)
      throw Error(Errc::store_error, path + ": written by a newer crier (schema version " + std::to_string(version) +
                                         "; this build reads up to " + std::to_string(kSchemaVersion) +
                                         "); refusing to touch it");
    if (verify) {
      Stmt check(db, path, "PRAGMA quick_check");
      std::string verdict = check.step() ? check.text(0) : std::string("no answer");
      if (verdict != "ok")
        throw Error(Errc::store_error, path + ": the file is corrupt (quick_check: " + verdict + ")");
    }
  }
  return version;
}

}  // namespace

void open_schema(sqlite3* db, const std::string& path, const Options& options) {
  // The first read: it fails on a file that is no database or a corrupt one, which is said as
  // such (not as the statement that found it).
  if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) != SQLITE_OK)
    fail(db, path, "cannot be read", Errc::store_error);
  int version = schema_version(db, path, options.verify_on_open);
  if (version == kSchemaVersion) return;
  if (options.read_only)
    throw Error(Errc::store_error, version == 0 ? path + ": is empty, not a crier store"
                                                : path + ": has schema version " + std::to_string(version) +
                                                      "; open it for writing once to upgrade it to version " +
                                                      std::to_string(kSchemaVersion));
  // Forward migrations, all in one transaction: a crash leaves the old version intact. The
  // version is read again under the write lock: processes that open a new store at once
  // migrate it once, the first to take the lock (the others found it migrated).
  Transaction t(db, path);
  version = schema_version(db, path, false);
  if (version == kSchemaVersion) return;
  for (int k = version; k < kSchemaVersion; ++k)
    exec(db, path, kMigrations[static_cast<std::size_t>(k)],
         "migrating the schema to version " + std::to_string(k + 1));
  exec(db, path, "UPDATE crier_meta SET value = '" + std::to_string(kSchemaVersion) + "' WHERE key = 'schema_version'",
       "recording the schema version");
  t.commit();
}

}  // namespace crier::sqlite
