// Options for a bus and for one subscriber. Every field states its default.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "crier/clock.hpp"
#include "crier/policy.hpp"
#include "crier/transport.hpp"

namespace crier {

/// Where a subscriber's handler runs.
enum class DeliveryMode {
  /// Queued on the subscriber's bounded queue and run on the bus's worker pool. The
  /// publisher never waits for the handler. The default. ("Async subscribers" in the docs.)
  async,
  /// Run on the publisher's thread, inside publish(). Lowest latency; the publisher waits
  /// for the handler (but never sees its exceptions). Memory transport only. ("Inline
  /// subscribers" in the docs.)
  sync,
};

/// Per-subscriber options.
struct SubscribeOptions {
  /// Default async. sync: memory bus only (a durable bus refuses it).
  DeliveryMode mode = DeliveryMode::async;
  /// Async only: how many of this subscriber's handlers may run at once. 1 (the default)
  /// delivers one publisher thread's events in publish order.
  int concurrency = 1;
  /// Memory bus, async only: capacity of the subscriber's queue per publishing thread (each
  /// thread that publishes to the subscriber gets its own lane, so publishers never
  /// contend), rounded up to a power of two. Default 65536.
  std::size_t queue_capacity = 65536;
  /// Memory bus, async only: what publish does when the lane is full. Default
  /// Overflow::block. (A durable subscriber's backlog waits in the store.)
  Overflow overflow = Overflow::block;
  /// Memory bus, with Overflow::block: how long publish waits for room (wall time). Default
  /// 10 s.
  std::chrono::milliseconds block_timeout{10000};
  /// Retries of failed events. Default: one attempt, then dead letters. An Inline
  /// subscriber's first attempts run on the publisher's thread; its delayed retries run on
  /// the worker pool.
  RetryPolicy retry{};
  /// Async only. Default: none.
  BreakerPolicy breaker{};
  /// Async only. Default Ordering::unordered.
  Ordering ordering = Ordering::unordered;
  /// A handler call longer than this is counted and reported (Report::Kind::slow_handler);
  /// it cannot be stopped. Measured with the bus's clock. Async only. Default 0: no budget.
  std::chrono::nanoseconds handler_budget{0};
  /// Durable buses: where a subscriber name the transport has never seen starts reading.
  /// Default: every event the transport still holds.
  StartFrom start{};
};

/// Something the bus tells the application: BusOptions::on_error receives these. The views
/// are valid only during the call.
struct Report {
  enum class Kind {
    handler_failed,     ///< a handler threw; `message` is the exception's text
    dead_lettered,      ///< an event was given up on and moved to the dead letters
    breaker_opened,     ///< a subscriber's breaker opened
    breaker_half_open,  ///< its cool-down ended: a probe event will be tried
    breaker_closed,     ///< the probe succeeded
    slow_handler,       ///< a handler call ran past its budget
    events_discarded,   ///< unsubscribe discarded queued events
    drain_deadline,     ///< drain's deadline passed with events left
    /// a durable subscriber could not read its transport (retried), record a failed attempt
    /// (the event is retried all the same), or store a dead letter (the event stays in the
    /// transport, and comes back)
    transport_failed,
    corrupt_event,        ///< a stored event was found damaged; it was dead-lettered with the reason
    connection_lost,      ///< the transport lost its engine; publishes wait (and retry) meanwhile
    connection_restored,  ///< the transport reached its engine again
  };
  Kind kind = Kind::handler_failed;
  std::string_view subscriber{};  ///< the subscriber's name, when there is one
  std::string_view event_type{};  ///< the event's type name, when there is one
  std::string_view message{};     ///< what happened, for people
  int attempt = 0;                ///< which attempt failed (handler_failed, dead_lettered)
};

/// Short name of a report kind ("handler_failed", ...).
CRIER_EXPORT const char* to_string(Report::Kind kind) noexcept;

/// Bus-wide options.
struct BusOptions {
  /// CloudEvents `source` of events published on this bus. Default "/crier/<host>/<pid>".
  /// UTF-8, as every CloudEvents string (else the Bus constructor throws invalid_argument).
  std::string source{};
  /// Threads of the async worker pool. Default 0: one per hardware thread. One more thread,
  /// at the lowest CPU priority, runs subscribers whose handlers keep failing.
  unsigned worker_threads = 0;
  /// Told about handler failures, dead letters, breaker changes, slow handlers and shutdown
  /// problems, on the thread where they happen. Must not throw (what it throws is
  /// swallowed) and should be quick. Default: none.
  std::function<void(const Report&)> on_error{};
  /// How long the destructor waits for queued events to be handled. Default 30 s.
  std::chrono::milliseconds drain_timeout{30000};
  /// Time for retries, breakers, budgets and timestamps. Default Clock::system().
  std::shared_ptr<Clock> clock{};
  /// Dead letters kept in memory; when full the oldest is evicted (and counted). Default
  /// 10000.
  std::size_t dead_letter_capacity = 10000;
};

/// What drain() achieved.
struct DrainResult {
  bool complete = true;  ///< every queued event was handled before the deadline
  /// Events left when the deadline passed. In-process: events still queued, on the retry
  /// timer or behind a failing key, which are lost with the bus. Durable: the events its
  /// subscribers had not finished; they stay stored, and the next bus that subscribes under
  /// the same names delivers them.
  std::size_t undelivered = 0;
};

}  // namespace crier
