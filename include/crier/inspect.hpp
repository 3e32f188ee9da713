// What a durable transport tells the tools (the crier CLI, the dashboard, an operator's own
// program) about the events it holds, and the few things they may change. Every durable
// transport implements it; a tool needs nothing but this interface and the public headers.
//
//   auto store = crier::sqlite::open("orders.db");
//   for (const auto& s : store->inspector().subscribers()) ...
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crier/envelope.hpp"
#include "crier/error.hpp"
#include "crier/event.hpp"
#include "crier/export.hpp"

namespace crier {

/// Where one subscriber name stands with one event type, in every process together.
struct SubscriberStatus {
  std::string subscriber{};
  std::string event_type{};
  /// The position of the newest event it has read (the transport's text; empty: none yet).
  std::string position{};
  /// Events it has not finished: not read yet, held by a consumer, or waiting for a retry.
  std::uint64_t lag = 0;
  /// How long ago the oldest unfinished event was stored, at most (0 when none is).
  std::chrono::milliseconds oldest_age{0};
  std::uint64_t in_flight = 0;     ///< held by a consumer now
  std::uint64_t retrying = 0;      ///< failed, waiting for another attempt
  std::uint64_t dead_letters = 0;  ///< given up on, kept for an operator
  /// When a consumer of the name last finished one of these events (handled, or given up
  /// on); the epoch when it never has, or the transport does not know.
  Timestamp last_settled{};
};

/// One event type as stored.
struct EventTypeStatus {
  std::string event_type{};
  std::uint64_t events = 0;   ///< stored now (retention deletes finished ones)
  std::string newest{};       ///< the newest one's position
  std::string newest_time{};  ///< the newest one's CloudEvents time attribute
};

/// A stored event and where it is.
struct StoredEnvelope {
  std::string position{};
  Envelope envelope{};
};

/// Which stored events browse() returns.
struct BrowseQuery {
  std::string event_type{};  ///< empty: every type
  /// Start here (the transport's text of a position; empty: at the oldest, or with
  /// newest_first at the newest). The event at `from` is included.
  std::string from{};
  /// Only events whose time attribute is at or after this RFC 3339 time (empty: any).
  std::string since{};
  bool newest_first = false;
  std::size_t limit = 100;
};

/// The tools' view of a durable transport. Thread-safe; every call reads or writes the
/// transport's current state, for all processes using it.
class CRIER_EXPORT Inspector {
 public:
  virtual ~Inspector() = default;
  /// Every (subscriber name, event type) the transport knows of, with its counts.
  virtual std::vector<SubscriberStatus> subscribers() = 0;
  /// Every event type stored, with its count and newest position.
  virtual std::vector<EventTypeStatus> event_types() = 0;
  /// Stored events, oldest or newest first, at most `limit`.
  virtual std::vector<StoredEnvelope> browse(const BrowseQuery& query) = 0;
  /// Moves where `subscriber` reads `event_type` next, for every consumer of that name: to the
  /// event at `position` (it and everything after it are delivered again: a replay), or, with
  /// position "end", past the newest event (a skip). Events already held or waiting for a
  /// retry are not taken back. Throws Error(Errc::invalid_name) for a bad name and
  /// Errc::invalid_argument for a position this transport did not print.
  virtual void move(std::string_view subscriber, std::string_view event_type, std::string_view position) = 0;
  /// Stores one event given in the CloudEvents JSON format, as a producer in another language
  /// would: every subscriber of its type gets it. Returns its id. Throws
  /// Error(Errc::invalid_envelope) saying what is wrong, Errc::invalid_name for a type name
  /// crier cannot subscribe to; nothing is stored then.
  virtual std::string publish_json(std::string_view cloudevent) = 0;
  /// What an operator should know that the counts above do not show (events accepted but
  /// not yet where the counts look, say), one sentence each; empty when there is nothing.
  virtual std::vector<std::string> notices() { return {}; }
};

namespace detail {
/// Throws Error(Errc::invalid_name), saying `where` first and then the rule, unless
/// `subscriber` and `event_type` are names crier takes.
inline void check_names(std::string_view subscriber, std::string_view event_type, std::string_view where) {
  const std::string at = where.empty() ? std::string() : std::string(where) + ": ";
  if (!is_valid_subscriber_name(subscriber))
    throw Error(Errc::invalid_name,
                at + "subscriber name " + quoted_name(subscriber) + " (want " + std::string(kSubscriberNameRule) + ")");
  if (!is_valid_event_type(event_type))
    throw Error(Errc::invalid_name, at + "event type " + quoted_name(event_type) +
                                        " is not one crier can subscribe to (want " + std::string(kEventTypeRule) +
                                        ")");
}

/// An event given as CloudEvents JSON by a producer outside crier, read as publish_json and
/// the tools take it: Envelope::from_json (Errc::invalid_envelope), and a type crier
/// subscribers can have (else Errc::invalid_name, the message after `where`: and the rule).
inline Envelope cloudevent_to_publish(std::string_view cloudevent, std::string_view where) {
  Envelope e = Envelope::from_json(cloudevent);
  if (!is_valid_event_type(e.type))
    throw Error(Errc::invalid_name, (where.empty() ? std::string() : std::string(where) + ": ") + "event type " +
                                        quoted_name(e.type) + " is not one crier can subscribe to (want " +
                                        std::string(kEventTypeRule) + ")");
  return e;
}
}  // namespace detail

}  // namespace crier
