// What JetStream answers a publish, read without trusting it: where the message was stored,
// a refusal worth trying again (no leader yet, a timeout inside the cluster), or a refusal.
// Pure (no cnats): unit-tested and fuzzed on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nats/server_json.hpp"

namespace crier::nats {

/// JetStream's "stream store failed" (10077): the stream will not take the message, e.g.
/// "maximum bytes exceeded" from a full stream that discards new messages. Its status is 503,
/// as an election's is, but no retry changes it.
inline constexpr int kStoreFailed = 10077;

/// What JetStream answered one publish.
struct PublishAnswer {
  enum class Kind { stored, again, refused };
  Kind kind = Kind::refused;
  std::uint64_t seq = 0;  ///< stored: its sequence (a duplicate's answer names the first copy's)
  std::string problem{};  ///< again, refused: what went wrong, for the publisher's error
  int err_code = 0;       ///< refused: JetStream's error code; 0 when it gave none
};

/// Reads an answer: `status` is the reply's status header (0 without one; 503: no responders),
/// `payload` its body, `{"stream":"S","seq":N}` or `{"error":{"code":C,"err_code":E,
/// "description":"..."}}`. Anything else, in any shape, is refused as "not an
/// acknowledgement". Never throws (it runs on cnats's thread).
PublishAnswer read_publish_answer(int status, std::string_view payload) noexcept;

/// The answer nearly every publish gets, `{"stream":"S","seq":N}` (ending `,"duplicate":true}`
/// when the id was seen before), read without building a JSON document: N, or nullopt for
/// anything else, even valid (read_publish_answer then parses it). S made of letters, digits,
/// `_` and `-`; N without leading zeros, in range. What it reads, a JSON parser reads the same.
std::optional<std::uint64_t> read_plain_ack(std::string_view payload) noexcept;

}  // namespace crier::nats
