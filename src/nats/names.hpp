// How crier's names become NATS names: subjects, durable consumer names, stream names.
// Pure functions, no cnats: unit-tested and fuzzed on their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace crier::nats {

/// True for a name nats-server accepts as a stream name (and crier as one it can put in
/// subjects and file names): 1 to 64 characters of [A-Za-z0-9_-].
bool is_valid_stream_name(std::string_view name) noexcept;
/// True for a subject prefix: 1 to 64 characters of [A-Za-z0-9_-] (one subject token).
bool is_valid_subject_prefix(std::string_view prefix) noexcept;
/// True for a JetStream domain crier can put in `$JS.<domain>.API`: one subject token, as a
/// subject prefix.
bool is_valid_domain(std::string_view domain) noexcept;

/// The host and port of a server URL (`[scheme://][user[:password]@]host[:port]`, an IPv6
/// host in brackets): views into the URL.
struct ServerAddress {
  std::string_view host{};
  std::optional<std::string_view> port{};  ///< as written, not checked
  std::string problem{};                   ///< why the URL has no host, in words; empty when it has one
};
ServerAddress split_server_url(std::string_view url);

/// What is wrong with a server URL, in words: no host, a port that is not 1 to 65535. Empty
/// when nothing is.
std::string server_url_problem(std::string_view url);

/// `<prefix>.<event type>`: every event type name is already a sequence of legal tokens.
std::string subject_of(std::string_view prefix, std::string_view event_type);
/// The event type of a subject under `<prefix>.`, or nullopt when it is not one.
std::optional<std::string> type_of_subject(std::string_view prefix, std::string_view subject);

/// The durable consumer of (subscriber, event type): both escaped ('_' as "_u", '.' as "_d")
/// and joined by "_s", so that the mapping is reversible and the name has no '.'.
/// Throws Error(Errc::invalid_name) when the result would be longer than nats-server allows
/// a consumer's directory name to be.
std::string durable_of(std::string_view subscriber, std::string_view event_type);
/// The (subscriber, event type) a durable name stands for, or nullopt for a name crier did
/// not make.
std::optional<std::pair<std::string, std::string>> parse_durable(std::string_view durable);

/// What a JetStream delivery's reply subject tells:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`
/// (with a domain and an account hash after "ACK" in the newer form).
struct Delivery {
  std::uint64_t count = 1;  ///< how many times it was delivered, this time included
  std::uint64_t seq = 0;    ///< its stream sequence
  std::int64_t ns = 0;      ///< when the stream stored it, ns since the epoch
};
/// The delivery a reply subject describes, or nullopt when it is not such a subject.
std::optional<Delivery> parse_delivery(std::string_view reply);

}  // namespace crier::nats
