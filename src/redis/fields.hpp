// The CloudEvents mapping of this transport (Redis has no official binding) and the text of
// stream entry ids. Pure functions, no hiredis: unit-tested and fuzzed on their own.
//
// An event is one stream entry whose fields are its attributes, each `ce_<attribute>`
// (ce_specversion, ce_id, ce_source, ce_type, ce_time, ce_subject, ce_dataschema, and every
// extension, e.g. ce_partitionkey), then `content-type` (datacontenttype) and `data` (the
// data as is, binary-safe). Any Redis client writes such an entry with XADD.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <crier/envelope.hpp>

namespace crier::redis {

/// A stream entry's fields in order (names may repeat; the first counts).
using Fields = std::vector<std::pair<std::string, std::string>>;

/// Calls add(std::string_view name, std::string_view value) for each field of an event, in
/// order, with views of its values: what fields_of() copies out.
template <typename Add>
void visit_fields(const Envelope& e, Add&& add) {
  add("ce_specversion", e.specversion);
  add("ce_id", e.id);
  add("ce_source", e.source);
  add("ce_type", e.type);
  if (!e.time.empty()) add("ce_time", e.time);
  if (!e.subject.empty()) add("ce_subject", e.subject);
  if (!e.dataschema.empty()) add("ce_dataschema", e.dataschema);
  for (const auto& [name, value] : e.extensions) add("ce_" + name, value);
  if (!e.datacontenttype.empty()) add("content-type", e.datacontenttype);
  add("data", e.data);
}

/// The fields of an event.
Fields fields_of(const Envelope& e);

/// The event an entry carries. Throws Error(Errc::invalid_envelope) saying what is wrong: a
/// missing ce_specversion (not a CloudEvent), a missing or malformed attribute.
Envelope envelope_of(const Fields& fields);
/// The same, the values moved out of `fields` into the event; when they are no valid event
/// (it throws), `fields` are left as they were, for readable_envelope().
Envelope take_envelope(Fields& fields);

/// What the tools show of an entry that is not a valid event, and what is dead-lettered:
/// whatever attributes it has, its id `<stream key>-<entry id>` when it has none, `type` as
/// its stream says, its data field (or, without one, its fields as JSON).
Envelope readable_envelope(const Fields& fields, std::string_view stream_key, std::string_view entry_id,
                           std::string_view type);

/// The first value of field `name`; nullptr when absent.
const std::string* field(const Fields& fields, std::string_view name);

/// A stream entry id, `<ms>-<seq>`.
struct EntryId {
  std::uint64_t ms = 0, seq = 0;
  std::string text() const { return std::to_string(ms) + "-" + std::to_string(seq); }
  friend auto operator<=>(const EntryId&, const EntryId&) = default;
};
/// Parses `<ms>-<seq>` (or `<ms>`, seq 0); nullopt when it is not one.
std::optional<EntryId> parse_entry_id(std::string_view text);
/// True when both are entry ids and `a` comes before `b`.
bool id_less(std::string_view a, std::string_view b);
/// The id just before `id`: what a consumer group's last-delivered id must be for `id` to be
/// the next entry it reads.
std::string id_before(const EntryId& id);

}  // namespace crier::redis
