#include "nats/publish_answer.hpp"

#include <stdexcept>

#include "core/json_parse.hpp"

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
  // Every publish is answered: read without nlohmann's lexer, which allocates a dozen times.
  nlohmann::json json;
  try {
    json = crier::detail::parse_json(payload);
  } catch (const std::invalid_argument&) {
    a.problem = kNotAnAck;
    return a;
  }
  if (const auto& e = member(json, "error"); !e.is_null()) {
    a.problem = error_text(e);
    const int code = error_number(e, "code");
    if (code == 503 || code == 408) {  // no leader, or a timeout inside the cluster: try again
      a.kind = PublishAnswer::Kind::again;
    } else {
      a.err_code = error_number(e, "err_code");
    }
    return a;
  }
  const auto& seq = member(json, "seq");
  if (!seq.is_number_unsigned()) {
    a.problem = kNotAnAck;
    return a;
  }
  a.kind = PublishAnswer::Kind::stored;
  a.seq = seq.get<std::uint64_t>();
  return a;
}

}  // namespace

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
