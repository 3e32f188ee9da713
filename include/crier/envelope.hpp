// CloudEvents 1.0 envelopes, event ids and publish attributes.
//
// In-process delivery never builds an Envelope: it hands handlers the C++ object itself.
// Envelopes exist for whoever asks (Delivery::envelope()) and for the durable and
// distributed transports, which store and move them.
#pragma once

#include <array>
#include <chrono>
#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crier/export.hpp"

namespace crier {

/// Wall-clock time of an event, as CloudEvents `time` carries it.
using Timestamp = std::chrono::system_clock::time_point;

/// A 128-bit RFC 9562 UUID. Event ids are version 7: the first 48 bits are the Unix time in
/// milliseconds, so ids sort by creation time; within one thread they strictly increase.
struct CRIER_EXPORT Uuid {
  std::array<std::uint8_t, 16> bytes{};

  /// A new UUIDv7. Thread-safe, lock-free, no allocation.
  static Uuid v7() noexcept;
  /// Parses the canonical 8-4-4-4-12 hex form. Throws Error(Errc::invalid_argument).
  static Uuid parse(std::string_view text);

  /// True for the all-zero UUID (used for "no id", e.g. a root event's causation id).
  bool is_nil() const noexcept;
  /// The canonical lower-case 36-character form.
  std::string to_string() const;
  /// For version 7 ids: the Unix time in milliseconds encoded in the id.
  std::uint64_t unix_ms() const noexcept;

  friend bool operator==(const Uuid&, const Uuid&) = default;
  friend auto operator<=>(const Uuid&, const Uuid&) = default;
};

/// Optional CloudEvents attributes a publisher sets on one event.
/// Extension names follow CloudEvents: 1 to 20 characters of [a-z0-9], not a core attribute
/// name. `Bus::publish` validates them and throws Error(Errc::invalid_name) otherwise.
struct Attributes {
  std::string subject{};        ///< CloudEvents `subject`, e.g. the order id. Default: none.
  std::string partition_key{};  ///< extension `partitionkey`: events of one key keep their order.
  std::string dataschema{};     ///< CloudEvents `dataschema` URI. Default: none.
  /// Further extension attributes, e.g. {"traceparent", "00-…"}.
  std::vector<std::pair<std::string, std::string>> extensions{};
};

/// Checks the attributes before an event is built from them: extension names
/// (Error(Errc::invalid_name)), traceparent and tracestate values, and that every value is
/// UTF-8, as CloudEvents strings are (Error(Errc::invalid_argument)); the error names the culprit.
CRIER_EXPORT void validate(const Attributes& attributes);

/// One CloudEvents 1.0 event: the required and optional context attributes, extension
/// attributes (correlationid, causationid, partitionkey, traceparent, ...) and the data.
struct CRIER_EXPORT Envelope {
  std::string specversion = "1.0";
  std::string id{};                                 ///< required: unique per source (crier: a UUIDv7)
  std::string source{};                             ///< required: URI-reference of the producer
  std::string type{};                               ///< required: the event type name
  std::string datacontenttype{};                    ///< optional, e.g. "application/json"
  std::string dataschema{};                         ///< optional URI
  std::string subject{};                            ///< optional
  std::string time{};                               ///< optional RFC 3339 timestamp, e.g. 2026-11-27T09:00:00.123456Z
  std::map<std::string, std::string> extensions{};  ///< extension attributes, lower-case names
  std::string data{};                               ///< the encoded event (JSON text by default)

  /// Throws Error(Errc::invalid_envelope) naming the first attribute that is missing or
  /// malformed (spec version, id, source, type, time format, a datacontenttype with a
  /// control character, extension names, a value that is not UTF-8).
  void validate() const;

  /// The CloudEvents JSON format ("structured mode"). JSON data is embedded as a value,
  /// other data as `data_base64`. Never throws on bytes that are not UTF-8 in an attribute
  /// (which validate() refuses, but an old event or a dead letter may hold): they are
  /// written as U+FFFD.
  std::string to_json() const;
  /// Parses and validates the CloudEvents JSON format; throws Error(Errc::invalid_envelope)
  /// that says what is wrong and where.
  static Envelope from_json(std::string_view text);
};

/// The envelope of a new event published outside a Bus (a transactional outbox, a tool): a
/// fresh UUIDv7 id, the current time, this process's default source
/// ("/crier/HOST/PID"), its own id as correlation id, the publisher's `attributes` (subject,
/// dataschema, partition key, extensions) and `data` as encoded by the event type's codec.
/// The attributes are not validated here (see validate()).
CRIER_EXPORT Envelope new_envelope(std::string_view type, std::string data, std::string_view content_type,
                                   const Attributes* attributes = nullptr);

/// RFC 3339 text of a timestamp, in UTC with microseconds: 2026-11-27T09:00:00.123456Z.
CRIER_EXPORT std::string format_time(Timestamp t);
/// Parses RFC 3339 (any offset, optional fraction); throws Error(Errc::invalid_argument).
CRIER_EXPORT Timestamp parse_time(std::string_view text);

}  // namespace crier
