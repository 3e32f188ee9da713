// The transactional outbox: an event written through the application's own connection.
#include "store_impl.hpp"

namespace crier::sqlite {

using namespace detail;

void publish_envelope_in(sqlite3* db, const Envelope& e) {
  if (db == nullptr) throw Error(Errc::invalid_argument, "crier::sqlite::publish_in: the connection is null");
  e.validate();
  const char* name = sqlite3_db_filename(db, "main");
  const std::string path = name && *name ? name : std::string("(in-memory database)");
  {
    sqlite3_stmt* check = nullptr;
    const bool found = sqlite3_prepare_v2(db, "SELECT value FROM crier_meta WHERE key = 'schema_version'", -1, &check,
                                          nullptr) == SQLITE_OK &&
                       sqlite3_step(check) == SQLITE_ROW;
    const auto* text = found ? reinterpret_cast<const char*>(sqlite3_column_text(check, 0)) : nullptr;
    const std::string version = text ? text : "";
    sqlite3_finalize(check);
    if (!found)
      throw Error(Errc::store_error, path + ": has no crier store; open it with crier::sqlite::open() once first");
    if (version != std::to_string(kSchemaVersion))
      throw Error(Errc::store_error, path + ": the store has schema version " + version + ", this build writes " +
                                         std::to_string(kSchemaVersion) +
                                         "; open it with crier::sqlite::open() once to bring it up to date");
  }
  // One statement reads the head and inserts after it: a write statement takes the write lock
  // as it starts, so no other writer can take that sequence in between, whether or not the
  // application has a transaction open. The checksum is computed in SQL, from the same values.
  register_row_functions(db, path);
  Stmt insert(db, path,
              "INSERT INTO crier_events (seq, id, type, source, time, datacontenttype, dataschema, subject, "
              "extensions, data, stored_ms, crc) SELECT s, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
              "crier_event_checksum(s, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
              "FROM (SELECT coalesce(max(seq), 0) + 1 AS s FROM crier_events)");
  std::string extensions;
  encode_extensions(e, extensions);
  bind_fields(insert, 1, view_of(e, extensions));
  insert.bind(10, wall_ms());
  insert.run();
}

}  // namespace crier::sqlite
