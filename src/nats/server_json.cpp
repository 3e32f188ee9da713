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

std::string error_text(const nlohmann::json& error) {
  const auto& description = member(error, "description");
  return (description.is_string() ? description.get<std::string>() : "error") + " (JetStream error " +
         std::to_string(error_number(error, "err_code")) + ")";
}

}  // namespace crier::nats
