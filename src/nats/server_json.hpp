// JetStream's JSON answers (API replies, consumer and stream info, publish acknowledgements),
// read without trusting their shape: a member that is missing, of another type or out of
// range never leads to undefined behaviour (nlohmann's const operator[] on a missing key,
// `get<int>` of a huge float) and never to a bare nlohmann exception.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace crier::nats {

/// The member `key` of `object`; a null value when `object` is not an object or has no such
/// member. The reference stays valid as long as `object` does.
const nlohmann::json& member(const nlohmann::json& object, std::string_view key) noexcept;

/// `value` read as a count (num_pending, stream_seq, a subject's messages…): 0 when null
/// (JetStream leaves zeros out). Anything but a non-negative integer throws Error
/// (transport_error) naming `name` and what it held.
std::uint64_t count_of(const nlohmann::json& value, std::string_view name);

/// The count `key` of `object`, read as count_of reads it.
std::uint64_t count_member(const nlohmann::json& object, std::string_view key);

/// The string `key` of `object`; empty when it is missing or not a string.
std::string text_member(const nlohmann::json& object, std::string_view key);

/// The integer member `key` of a JetStream error object (`code`, `err_code`): 0 when absent,
/// not an integer, or out of an int's range.
int error_number(const nlohmann::json& error, const char* key) noexcept;

/// JetStream's "insufficient resources" (10023): the server's JetStream storage is at its
/// limit. A publish that meets it is tried again: in a cluster its stream leader steps down,
/// and a replica with room may take over.
inline constexpr int kInsufficientResources = 10023;
/// The account's (or a stream's) limit on consumers (max_consumers) is reached.
inline constexpr int kMaxConsumers = 10026;
/// The account's limit on streams (max_streams) is reached.
inline constexpr int kMaxStreams = 10027;
/// The server runs JetStream, but not for the account of the connection's user.
inline constexpr int kNotEnabledForAccount = 10039;

/// What a JetStream error object says, for an error message: "<description> (JetStream error
/// <err_code>)", with "error" for a description that is missing or not a string; for an error
/// a server's limit causes, what it means and what to do after it.
std::string error_text(const nlohmann::json& error);

}  // namespace crier::nats
