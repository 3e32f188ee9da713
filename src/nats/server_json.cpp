#include "nats/server_json.hpp"

#include <limits>

#include "crier/error.hpp"

namespace crier::nats {

const nlohmann::json& member(const nlohmann::json& object, std::string_view key) noexcept {
  static const nlohmann::json null;
  if (!object.is_object()) return null;
  const auto it = object.find(key);
  return it == object.end() ? null : *it;
}

std::uint64_t count_of(const nlohmann::json& v, std::string_view name) {
  if (v.is_null()) return 0;
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  std::string shown = v.dump();
  if (shown.size() > 64) shown = shown.substr(0, 64) + "...";
  throw Error(Errc::transport_error,
              "nats: JetStream answered " + std::string(name) + " = " + shown + ", which is not a count");
}

std::uint64_t count_member(const nlohmann::json& object, std::string_view key) {
  return count_of(member(object, key), key);
}

std::string text_member(const nlohmann::json& object, std::string_view key) {
  const auto& v = member(object, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

int error_number(const nlohmann::json& error, const char* key) noexcept {
  const auto& v = member(error, key);
  if (v.is_number_unsigned()) {
    const auto n = v.get<std::uint64_t>();
    return n <= static_cast<std::uint64_t>(std::numeric_limits<int>::max()) ? static_cast<int>(n) : 0;
  }
  if (v.is_number_integer()) {
    const auto n = v.get<std::int64_t>();
    return n >= std::numeric_limits<int>::min() && n <= std::numeric_limits<int>::max() ? static_cast<int>(n) : 0;
  }
  return 0;
}

namespace {

// What an error that a limit of the server's causes means, and what to do; empty for others.
std::string_view limit_hint(int err_code) {
  switch (err_code) {
    case kInsufficientResources:
      return ": the server's JetStream storage is at its limit (max_file_store or max_memory_store in its "
             "jetstream block, or the account's); make room, raise the limit, or give the stream max_bytes or "
             "max_age so that old events go";
    case kMaxConsumers:
      return ": the limit on consumers (max_consumers, the account's or the stream's) is reached; a bus makes a "
             "durable consumer for each subscriber name and event type, and one for its redriven dead letters: "
             "raise the limit, or delete the consumers no longer used";
    case kMaxStreams:
      return ": the account's limit on streams (max_streams) is reached; a bus makes three (its stream, "
             "<stream>_DLQ and <stream>_ATTEMPTS): raise the limit, or remove streams no longer used";
    case kNotEnabledForAccount:
      return ": the server runs JetStream, but the account of this connection's user has none; give the "
             "account `jetstream: enabled` (or limits) in the server's accounts block, or connect as a user of an "
             "account that has it";
    default:
      return {};
  }
}

}  // namespace

std::string error_text(const nlohmann::json& error) {
  const auto& description = member(error, "description");
  const int err_code = error_number(error, "err_code");
  return (description.is_string() ? description.get<std::string>() : "error") + " (JetStream error " +
         std::to_string(err_code) + ")" + std::string(limit_hint(err_code));
}

}  // namespace crier::nats
