// The transactional outbox: an event written through the application's own connection.
#include <unistd.h>

#include <cstring>

#include "store_impl.hpp"

namespace crier::sqlite::detail {

namespace {
std::string outbox_source() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  return "/crier/" + std::string(host) + "/" + std::to_string(getpid());
}
}  // namespace

Envelope outbox_envelope(std::string_view type, const Attributes* attributes, std::string data,
                         std::string_view content_type) {
  static const std::string source = outbox_source();
  Envelope e;
  const Uuid id = Uuid::v7();
  e.id = id.to_string();
  e.source = source;
  e.type = std::string(type);
  e.time = format_time(std::chrono::system_clock::now());
  e.datacontenttype = std::string(content_type);
  e.extensions["correlationid"] = e.id;
  if (attributes) {
    e.subject = attributes->subject;
    e.dataschema = attributes->dataschema;
    if (!attributes->partition_key.empty()) e.extensions["partitionkey"] = attributes->partition_key;
    for (const auto& [k, v] : attributes->extensions) e.extensions[k] = v;
  }
  e.data = std::move(data);
  return e;
}

void append_in(sqlite3* db, const Envelope& e) {
  if (db == nullptr) throw Error(Errc::invalid_argument, "crier::sqlite::publish_in: the connection is null");
  const char* name = sqlite3_db_filename(db, "main");
  const std::string path = name && *name ? name : std::string("(in-memory database)");
  {
    sqlite3_stmt* check = nullptr;
    const bool ok = sqlite3_prepare_v2(db, "SELECT value FROM crier_meta WHERE key = 'schema_version'", -1, &check,
                                       nullptr) == SQLITE_OK &&
                    sqlite3_step(check) == SQLITE_ROW;
    sqlite3_finalize(check);
    if (!ok)
      throw Error(Errc::store_error, path + ": has no crier store; open it with crier::sqlite::open() once first");
  }
  Stmt insert(db, path, kInsertEvent);
  std::string extensions;
  encode_extensions(e, extensions);
  insert_event_row(insert, view_of(e, extensions), wall_ms());
}

}  // namespace crier::sqlite::detail
