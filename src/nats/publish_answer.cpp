#include "nats/publish_answer.hpp"

#include <charconv>
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
    a.problem = status == 503 ? "no responders: the stream has no leader (yet), or does not exist"
                              : "status " + std::to_string(status);
    return a;
  }
  if (const auto seq = read_plain_ack(payload)) {  // every publish is answered: no document
    a.kind = PublishAnswer::Kind::stored;
    a.seq = *seq;
    return a;
  }
  // Read without nlohmann's lexer, which allocates a dozen times.
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
    const int err_code = error_number(e, "err_code");
    // No leader, or a timeout inside the cluster: try again.
    if ((code == 503 && err_code != kStoreFailed) || code == 408) {
      a.kind = PublishAnswer::Kind::again;
    } else {
      a.err_code = err_code;
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

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// Takes `prefix` off the front of `text`, if it is there.
bool consume(std::string_view& text, std::string_view prefix) {
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  return true;
}

}  // namespace

std::optional<std::uint64_t> read_plain_ack(std::string_view p) noexcept {
  if (!consume(p, R"({"stream":")")) return std::nullopt;
  std::size_t name = 0;
  while (name < p.size() && is_name_char(p[name])) ++name;
  p.remove_prefix(name);
  if (name == 0 || !consume(p, R"(","seq":)")) return std::nullopt;
  if (p.size() > 1 && p[0] == '0' && p[1] >= '0' && p[1] <= '9') return std::nullopt;  // JSON has no leading zeros
  std::uint64_t seq = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), seq);
  if (ec != std::errc{}) return std::nullopt;
  p.remove_prefix(static_cast<std::size_t>(end - p.data()));
  if (p == "}" || p == R"(,"duplicate":true})") return seq;
  return std::nullopt;
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
