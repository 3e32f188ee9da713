// A stored event: its row in crier_events, written with a checksum and verified when read.
//
// SQLite checks the structure of its b-trees, not the contents of rows: a damaged sector in
// the middle of a page can change an event and leave the file "ok". So every row crier writes
// carries `crc`: CRC-32C of every column in its low 32 bits, and CRC-32C of the type alone in
// its high 32 bits, so that a reader can tell whether the type column itself can be trusted
// (a subscriber's query selects its events by type: an event whose type is damaged could
// otherwise pass unseen). A row written by another program without a checksum (crc NULL) is
// read unverified.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "crier/envelope.hpp"
#include "db.hpp"
#include "journal.hpp"

namespace crier::sqlite {

/// The columns every query of events selects, in this order, read by read_envelope() and
/// row_damage().
constexpr std::string_view kEventColumns =
    "e.seq, e.id, e.type, e.source, e.time, e.datacontenttype, e.dataschema, e.subject, e.extensions, e.data, "
    "e.stored_ms, e.crc";

/// The statement that stores one event, whoever writes it (mover, recovery, outbox).
constexpr std::string_view kInsertEvent =
    "INSERT INTO crier_events (seq, id, type, source, time, datacontenttype, dataschema, subject, extensions, data, "
    "stored_ms, crc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Binds a record's nine columns, id to data, to parameters `first`... of `s`.
void bind_fields(Stmt& s, int first, const RecordView& r);
/// Stores a record as the event at sequence `seq` (the caller's transaction holds the write
/// lock and knows the head), with its checksum, through a kInsertEvent statement.
void insert_event_row(Stmt& insert, const RecordView& r, std::int64_t seq, std::int64_t stored_ms);
/// The checksum stored with an event (see the top of this file).
std::int64_t event_checksum(std::int64_t seq, const RecordView& r, std::int64_t stored_ms) noexcept;

/// Why the event row that `row` holds at columns `first`... (kEventColumns) cannot be trusted:
/// a column of the wrong kind, or a checksum that does not match. "" when it is intact.
/// Call before reading the row's columns any other way.
std::string row_damage(const Stmt& row, int first);
/// A subscriber's events of type `?param`, and every row whose type cannot be trusted (it may
/// be one of them): the WHERE condition on crier_events `e` (the functions below needed).
std::string of_type_or_damaged(int param);
/// Registers the SQL functions crier_event_checksum(seq, id, ..., data, stored_ms) (the
/// migration to checksums) and crier_type_intact(type, crc) on a connection.
void register_row_functions(sqlite3* db, const std::string& path);

/// Reads the kEventColumns starting at column `first` of the current row.
Envelope read_envelope(const Stmt& row, int first);
/// A record's view of an envelope (its extensions already encoded).
RecordView view_of(const Envelope& e, std::string_view extensions);
/// The extension attributes as stored (a JSON object of strings), into `out`.
void encode_extensions(const Envelope& e, std::string& out);

}  // namespace crier::sqlite
