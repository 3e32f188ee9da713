#include "event_row.hpp"

#include <bit>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "crc32c.hpp"
#include "crier/event.hpp"

namespace crier::sqlite {

namespace {

// The columns of kEventColumns after `seq`, in order, with their names for messages.
constexpr int kId = 1, kData = 9, kStoredMs = 10, kCrc = 11;
constexpr const char* kColumnNames[] = {"seq",        "id",      "type",       "source", "time",      "datacontenttype",
                                        "dataschema", "subject", "extensions", "data",   "stored_ms", "crc"};

std::uint32_t crc_of_int(std::int64_t v, std::uint32_t crc) noexcept {
  char b[8];
  std::memcpy(b, &v, 8);  // little-endian on every platform crier builds for
  return crc32c(std::string_view(b, 8), crc);
}

std::uint32_t crc_of_field(std::string_view f, std::uint32_t crc) noexcept {
  const auto n = static_cast<std::uint32_t>(f.size());
  char b[4];
  std::memcpy(b, &n, 4);
  return crc32c(f, crc32c(std::string_view(b, 4), crc));
}

std::int64_t pack(std::uint32_t type_crc, std::uint32_t row_crc) noexcept {
  return std::bit_cast<std::int64_t>(static_cast<std::uint64_t>(type_crc) << 32 | row_crc);
}

bool type_intact(std::string_view type, std::int64_t crc) noexcept {
  return crc32c(type) == static_cast<std::uint32_t>(std::bit_cast<std::uint64_t>(crc) >> 32);
}

// The record view of the columns of a row as given by `text(i)` for i = id..data.
template <class Column>
RecordView record_of(Column text) {
  RecordView r;
  std::string_view* fields[] = {&r.id,         &r.type,    &r.source,     &r.time, &r.datacontenttype,
                                &r.dataschema, &r.subject, &r.extensions, &r.data};
  for (int i = 0; i < 9; ++i) *fields[i] = text(kId + i);
  return r;
}

std::string_view value_bytes(sqlite3_value* v) {
  const void* p =
      sqlite3_value_type(v) == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(v)) : sqlite3_value_blob(v);
  return p ? std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(sqlite3_value_bytes(v)))
           : std::string_view();
}

void sql_event_checksum(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (argc != 11) return sqlite3_result_error(ctx, "crier_event_checksum takes 11 arguments", -1);
  const RecordView r = record_of([&](int i) { return value_bytes(argv[i]); });
  sqlite3_result_int64(ctx, event_checksum(sqlite3_value_int64(argv[0]), r, sqlite3_value_int64(argv[kStoredMs])));
}

void sql_type_intact(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  if (argc != 2) return sqlite3_result_error(ctx, "crier_type_intact takes 2 arguments", -1);
  if (sqlite3_value_type(argv[1]) == SQLITE_NULL) return sqlite3_result_int(ctx, 1);  // written unverified
  if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER || sqlite3_value_type(argv[0]) != SQLITE_TEXT)
    return sqlite3_result_int(ctx, 0);
  sqlite3_result_int(ctx, type_intact(value_bytes(argv[0]), sqlite3_value_int64(argv[1])) ? 1 : 0);
}

const char* kind_name(int kind) {
  switch (kind) {
    case SQLITE_INTEGER:
      return "an integer";
    case SQLITE_FLOAT:
      return "a real number";
    case SQLITE_TEXT:
      return "text";
    case SQLITE_BLOB:
      return "a blob";
    default:
      return "NULL";
  }
}

}  // namespace

std::int64_t event_checksum(std::int64_t seq, const RecordView& r, std::int64_t stored_ms) noexcept {
  std::uint32_t crc = crc_of_int(seq, 0);
  for (std::string_view f :
       {r.id, r.type, r.source, r.time, r.datacontenttype, r.dataschema, r.subject, r.extensions, r.data})
    crc = crc_of_field(f, crc);
  crc = crc_of_int(stored_ms, crc);
  return pack(crc32c(r.type), crc);
}

void bind_fields(Stmt& s, int first, const RecordView& r) {
  s.bind(first, r.id)
      .bind(first + 1, r.type)
      .bind(first + 2, r.source)
      .bind(first + 3, r.time)
      .bind(first + 4, r.datacontenttype)
      .bind(first + 5, r.dataschema)
      .bind(first + 6, r.subject)
      .bind(first + 7, r.extensions)
      .bind_blob(first + 8, r.data);
}

void insert_event_row(Stmt& insert, const RecordView& r, std::int64_t seq, std::int64_t stored_ms) {
  insert.bind(1, seq);
  bind_fields(insert, 2, r);
  insert.bind(11, stored_ms).bind(12, event_checksum(seq, r, stored_ms));
  insert.run();
}

std::string row_damage(const Stmt& row, int first) {
  const int crc_kind = row.kind(first + kCrc);
  if (crc_kind == SQLITE_NULL) return "";  // written by another program, without a checksum
  // What crier writes: integers, text, and the data as a blob.
  for (int i = 0; i <= kCrc; ++i) {
    const int want = i == 0 || i >= kStoredMs ? SQLITE_INTEGER : i == kData ? SQLITE_BLOB : SQLITE_TEXT;
    const int got = row.kind(first + i);
    if (got != want && !(i == kData && (got == SQLITE_TEXT || got == SQLITE_NULL)))  // as another program wrote it
      return std::string("its ") + kColumnNames[i] + " column holds " + kind_name(got) + ", not " + kind_name(want);
  }
  const RecordView r = record_of([&](int i) { return row.bytes(first + i); });
  const std::int64_t stored = row.int64(first + kCrc);
  const std::int64_t computed = event_checksum(row.int64(first), r, row.int64(first + kStoredMs));
  if (stored != computed) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "its checksum does not match its contents (stored %016llx, computed %016llx)",
                  static_cast<unsigned long long>(stored), static_cast<unsigned long long>(computed));
    return std::string(buf) + (type_intact(r.type, stored) ? "" : "; its type cannot be trusted");
  }
  if (!is_valid_event_type(r.type)) return "its type " + detail::quoted_name(r.type) + " is not a valid event type";
  return "";
}

std::string of_type_or_damaged(int param) {
  const std::string p = std::to_string(param);
  return "(e.type = ?" + p + " OR NOT crier_type_intact(e.type, e.crc))";
}

void register_row_functions(sqlite3* db, const std::string& path) {
  constexpr int kFlags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  if (sqlite3_create_function_v2(db, "crier_event_checksum", 11, kFlags, nullptr, sql_event_checksum, nullptr, nullptr,
                                 nullptr) != SQLITE_OK ||
      sqlite3_create_function_v2(db, "crier_type_intact", 2, kFlags, nullptr, sql_type_intact, nullptr, nullptr,
                                 nullptr) != SQLITE_OK)
    fail(db, path, "registering crier's row functions");
}

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

RecordView view_of(const Envelope& e, std::string_view extensions) {
  RecordView r;
  r.id = e.id;
  r.type = e.type;
  r.source = e.source;
  r.time = e.time;
  r.datacontenttype = e.datacontenttype;
  r.dataschema = e.dataschema;
  r.subject = e.subject;
  r.extensions = extensions;
  r.data = e.data;
  return r;
}

void encode_extensions(const Envelope& e, std::string& out) {
  // A JSON object of strings, written directly: this runs for every publish.
  out.assign(1, '{');
  for (const auto& [name, value] : e.extensions) {
    if (out.size() > 1) out += ',';
    out += '"';
    out += name;  // extension names are [a-z0-9]
    out += "\":\"";
    for (const char c : value) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += c;
          }
      }
    }
    out += '"';
  }
  out += '}';
}

}  // namespace crier::sqlite
