// The stored-event row reader (what a subscriber reads from a store another program may have
// written, or a disk may have damaged), fed rows of any values: it reads every row without
// crashing, and says a row is intact exactly when crier wrote it with a valid type name.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "crier/event.hpp"
#include "store_impl.hpp"

using namespace crier::sqlite;

namespace {

sqlite3* store_in_memory() {
  static const std::string path = ":memory:";
  sqlite3* db = open_connection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, std::chrono::milliseconds(0));
  register_row_functions(db, path);
  open_schema(db, path, Options{});
  return db;
}

// Binds one fuzzed value of a fuzzed storage class.
void bind_any(FuzzedDataProvider& in, sqlite3_stmt* s, int i) {
  switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0:
      sqlite3_bind_int64(s, i, in.ConsumeIntegral<std::int64_t>());
      break;
    case 1:
      sqlite3_bind_double(s, i, in.ConsumeFloatingPoint<double>());
      break;
    case 2: {
      const std::string t = in.ConsumeRandomLengthString(64);
      sqlite3_bind_text(s, i, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
      break;
    }
    case 3: {
      const std::string b = in.ConsumeRandomLengthString(64);
      sqlite3_bind_blob(s, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
      break;
    }
    default:
      sqlite3_bind_null(s, i);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  static sqlite3* db = store_in_memory();
  static const std::string path = ":memory:";
  FuzzedDataProvider in(bytes, size);
  exec(db, path, "DELETE FROM crier_events", "emptying");

  // A row as crier writes it, of fuzzed fields.
  std::vector<std::string> fields;
  for (int i = 0; i < 9; ++i) fields.push_back(in.ConsumeRandomLengthString(64));
  RecordView r;
  r.id = fields[0], r.type = fields[1], r.source = fields[2], r.time = fields[3], r.datacontenttype = fields[4];
  r.dataschema = fields[5], r.subject = fields[6], r.extensions = fields[7], r.data = fields[8];
  Stmt insert(db, path, kInsertEvent);
  insert_event_row(insert, r, 1, in.ConsumeIntegral<std::int64_t>());

  // A row of anything at all, as another program (or a damaged page) may hold, for columns
  // without constraints; NOT NULL ones refuse NULL, which is then left out.
  sqlite3_stmt* any = nullptr;
  sqlite3_prepare_v2(
      db,
      "INSERT OR IGNORE INTO crier_events (seq, id, type, source, time, datacontenttype, dataschema, "
      "subject, extensions, data, stored_ms, crc) VALUES (2, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
      -1, &any, nullptr);
  for (int i = 1; i <= 11; ++i) bind_any(in, any, i);
  sqlite3_step(any);
  sqlite3_finalize(any);

  Stmt rows(db, path, "SELECT " + std::string(kEventColumns) + " FROM crier_events e ORDER BY e.seq");
  while (rows.step()) {
    const std::string damage = row_damage(rows, 0);
    const crier::Envelope e = read_envelope(rows, 0);
    if (rows.int64(0) == 1 && damage.empty() != crier::is_valid_event_type(r.type)) std::abort();
  }
  Stmt types(db, path, "SELECT count(*) FROM crier_events e WHERE " + of_type_or_damaged(1));
  types.bind(1, r.type);
  if (!types.step()) std::abort();
  return 0;
}
