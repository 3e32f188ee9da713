// What failed attempts left (crier::Attempts) as the JSON text an engine transport keeps
// beside an event (a NATS message, a Redis hash field), so that a restart or another process
// resumes from it; and the millisecond timestamps it is written in. Header-only, shared by
// the transports' libraries.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <crier/transport.hpp>
#include <nlohmann/json.hpp>

namespace crier::detail {

/// Milliseconds since the epoch, and back.
inline std::int64_t unix_ms(Timestamp t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline Timestamp from_unix_ms(std::int64_t ms) { return Timestamp(std::chrono::milliseconds(ms)); }

/// `{"failed":N,"first_error":...,"first_failure_ms":...,"retry_at_ms":...}`
inline std::string record_of(const Attempts& a) {
  return nlohmann::json({{"failed", a.failed},
                         {"first_error", a.first_error},
                         {"first_failure_ms", unix_ms(a.first_failure)},
                         {"retry_at_ms", unix_ms(a.retry_at)}})
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// The attempts a record holds; none (failed 0) for text that is not one.
inline Attempts attempts_of_record(std::string_view text) {
  Attempts a;
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return a;
  a.failed = j.value("failed", 0);
  a.first_error = j.value("first_error", std::string());
  a.first_failure = from_unix_ms(j.value("first_failure_ms", std::int64_t{0}));
  a.retry_at = from_unix_ms(j.value("retry_at_ms", std::int64_t{0}));
  return a;
}

}  // namespace crier::detail
