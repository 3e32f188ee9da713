// What the NATS transport's parts share: the connection, and the names of its streams and
// subjects.
//
//   <stream>           <prefix>.<type>             the events
//                      <prefix>-redrive.<durable>  dead letters sent back to one subscriber
//   <stream>_DLQ       <prefix>-dlq.<durable>      dead letters, with why, as headers
//   <stream>_ATTEMPTS  <prefix>-attempts.<durable>.h.<seq>  failed attempts of an event the bus holds
//                      <prefix>-attempts.<durable>.w.<seq>  ... of one waiting in the server for its retry
//                      <prefix>-attempts.<durable>.turn     which process an ordered subscriber's turn is
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "nats/connection.hpp"
#include "nats/names.hpp"

namespace crier::nats {

struct Context {
  std::shared_ptr<Connection> conn;
  std::string stream, dlq_stream, attempts_stream, prefix;
  /// crier's own streams beside the events' (dead letters, attempts), as connect made them:
  /// one deleted under the bus is made again (with_own_stream).
  std::map<std::string, nlohmann::json> own_streams;

  const Options& options() const noexcept { return conn->options(); }
  std::string event_subject(std::string_view type) const { return subject_of(prefix, type); }
  std::string redrive_subject(std::string_view durable) const { return prefix + "-redrive." + std::string(durable); }
  std::string dlq_subject(std::string_view durable) const { return prefix + "-dlq." + std::string(durable); }
  std::string attempts_subject(std::string_view durable, char kind, std::uint64_t seq) const {
    return prefix + "-attempts." + std::string(durable) + "." + kind + "." + std::to_string(seq);
  }
  std::string turn_subject(std::string_view durable) const {
    return prefix + "-attempts." + std::string(durable) + ".turn";
  }
};

/// Makes `stream`, one of ctx.own_streams, again as connect made it if it is missing, and
/// says so (Connection::notice).
void make_own_stream_again(const Context& ctx, const std::string& stream);

/// Runs `fn`; when it finds `stream`, one of crier's own, missing (ApiError(kStreamNotFound):
/// deleted by an operator, another client), makes it again and runs `fn` once more. What was
/// in it went with it: dead letters; attempts of failed events, which then come again counted
/// from their delivery (at least once); an ordered subscriber's turn, which the next process
/// to ask takes.
template <class Fn>
auto with_own_stream(const Context& ctx, const std::string& stream, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const ApiError& e) {
    if (e.err_code != kStreamNotFound) throw;
  }
  make_own_stream_again(ctx, stream);
  return fn();
}

/// A duration as JetStream's API gives durations: nanoseconds.
inline std::int64_t ns_of(std::chrono::milliseconds d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

/// What a plain message of `stream` at `seq`, stored at `time` (RFC 3339), is delivered as:
/// its id from Nats-Msg-Id, else `<stream>-<seq>`; its source `nats://<stream>`.
PlainOrigin plain_origin(const Context& ctx, const HeaderViews& headers, std::string event_type, std::uint64_t seq,
                         std::string time);

/// What of the server's max_payload an event leaves to the headers its dead letter adds (the
/// subscriber, the times, the two error texts, cut to fit), or half of a max_payload smaller
/// than twice this: larger events are refused at publish, so that every event crier stores can
/// also be dead-lettered.
inline constexpr std::size_t kDeadLetterRoom = 4096;

/// The messages of an event as this transport puts it on the wire (options().content_mode),
/// to `subject`, with `msg_id` for de-duplication (percent-encoded as the binding encodes a
/// header value, when it needs to be). In binary mode it refers to `e`, which must
/// outlive the publish.
Outgoing outgoing_of(const Context& ctx, const Envelope& e, std::string subject, std::string msg_id);

}  // namespace crier::nats
