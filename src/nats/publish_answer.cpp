#include "nats/publish_answer.hpp"

#include <limits>

namespace crier::nats {

namespace {

constexpr const char* kNotAnAck = "JetStream answered a publish with something that is not an acknowledgement";

// Reads every member with its type checked: only running out of memory throws.
PublishAnswer read(int status, std::string_view payload) {
  PublishAnswer a;
  if (status != 0) {
    a.kind = PublishAnswer::Kind::again;
    a.problem = status == 503 ? "no responders: the stream has no leader (yet)" : "status " + std::to_string(status);
    return a;
  }
  const auto json = nlohmann::json::parse(payload, nullptr, false);
  if (json.is_object() && json.contains("error")) {
    const auto& e = json["error"];
    a.problem = error_text(e);
    const int code = error_number(e, "code");
    if (code == 503 || code == 408) {  // no leader, or a timeout inside the cluster: try again
      a.kind = PublishAnswer::Kind::again;
    } else {
      a.err_code = error_number(e, "err_code");
    }
    return a;
  }
  if (!json.is_object() || !json.contains("seq") || !json["seq"].is_number_unsigned()) {
    a.problem = kNotAnAck;
    return a;
  }
  a.kind = PublishAnswer::Kind::stored;
  a.seq = json["seq"].get<std::uint64_t>();
  return a;
}

}  // namespace

int error_number(const nlohmann::json& error, const char* key) noexcept {
  if (!error.is_object()) return 0;
  const auto it = error.find(key);
  if (it == error.end()) return 0;
  if (it->is_number_unsigned()) {
    const auto n = it->get<std::uint64_t>();
    return n <= static_cast<std::uint64_t>(std::numeric_limits<int>::max()) ? static_cast<int>(n) : 0;
  }
  if (it->is_number_integer()) {
    const auto n = it->get<std::int64_t>();
    return n >= std::numeric_limits<int>::min() && n <= std::numeric_limits<int>::max() ? static_cast<int>(n) : 0;
  }
  return 0;
}

std::string error_text(const nlohmann::json& error) {
  const auto description = error.is_object() ? error.find("description") : error.end();
  return (description != error.end() && description->is_string() ? description->get<std::string>() : "error") +
         " (JetStream error " + std::to_string(error_number(error, "err_code")) + ")";
}

PublishAnswer read_publish_answer(int status, std::string_view payload) noexcept {
  try {
    return read(status, payload);
  } catch (const std::exception&) {  // out of memory
    PublishAnswer a;
    a.problem = kNotAnAck;
    return a;
  }
}

}  // namespace crier::nats
