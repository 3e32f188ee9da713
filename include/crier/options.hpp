// Options for a bus and for one subscriber. Every field states its default.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace crier {

/// Where a subscriber's handler runs.
enum class DeliveryMode {
  /// Queued on the subscriber's bounded queue and run on the bus's worker pool. The
  /// publisher never waits for the handler. The default.
  Async,
  /// Run on the publisher's thread, inside publish(). Lowest latency; the publisher waits
  /// for the handler (but never sees its exceptions). Memory transport only.
  Inline,
};

/// Per-subscriber options.
struct SubscribeOptions {
  /// Default Async.
  DeliveryMode mode = DeliveryMode::Async;
  /// Async only: how many of this subscriber's handlers may run at once. 1 (the default)
  /// delivers one publisher thread's events in publish order.
  int concurrency = 1;
  /// Async only: capacity of the subscriber's queue per publishing thread (each thread that
  /// publishes to the subscriber gets its own lane, so publishers never contend), rounded up
  /// to a power of two. Default 65536. A publisher that finds its lane full waits for room.
  std::size_t queue_capacity = 65536;
};

/// A handler failure, as reported to BusOptions::on_error. The views are valid only
/// during the call.
struct HandlerFailure {
  std::string_view subscriber;  ///< the subscriber's name
  std::string_view event_type;  ///< the event's type name
  std::string_view message;     ///< the exception's what(), or a note for non-std exceptions
  int attempt = 1;              ///< which attempt failed
};

/// Bus-wide options.
struct BusOptions {
  /// CloudEvents `source` of events published on this bus. Default "/crier/<host>/<pid>".
  std::string source;
  /// Threads of the async worker pool. Default 0: one per hardware thread.
  unsigned worker_threads = 0;
  /// Called on the failing thread for each handler failure and for shutdown reports.
  /// Must not throw (exceptions it throws are swallowed). Default: none.
  std::function<void(const HandlerFailure&)> on_error;
  /// How long the destructor waits for queued events to be handled. Default 30 s.
  std::chrono::milliseconds drain_timeout{30000};
};

/// What drain() achieved.
struct DrainResult {
  bool complete = true;         ///< every queued event was handled before the deadline
  std::size_t undelivered = 0;  ///< events still queued when the deadline passed
};

/// Counters of one subscriber, from Bus::stats().
struct SubscriberStats {
  std::string name;
  std::string event_type;
  DeliveryMode mode = DeliveryMode::Async;
  std::uint64_t delivered = 0;  ///< handler calls that returned normally
  std::uint64_t failed = 0;     ///< handler calls that threw
  std::size_t queued = 0;       ///< events waiting in its queue (async)
  std::chrono::nanoseconds handler_time{0};  ///< time spent in its handler (async)
};

}  // namespace crier
