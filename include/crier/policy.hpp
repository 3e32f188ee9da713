// What a subscriber does when its handler fails, or its queue is full.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <stdexcept>

namespace crier {

/// Thrown by a handler to say "this event can never succeed": it goes straight to the dead
/// letters, whatever attempts remain.
class PermanentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How often and when a failed event is tried again. Attempts 2..immediate_attempts follow
/// at once; later ones after a delay of initial_delay * multiplier^k (k = 0, 1, ...), capped at
/// max_delay, with full jitter (uniformly random between 0 and that) unless jitter is false.
/// Delays run on the bus's timer: a waiting event holds no thread.
struct RetryPolicy {
  /// Attempts in all, the first included. Default 1: no retry.
  int max_attempts = 1;
  /// How many of them run back to back, the first included; at most max_attempts (subscribe
  /// rejects more). Default 1.
  int immediate_attempts = 1;
  /// First delayed retry's delay. Default 100 ms.
  std::chrono::milliseconds initial_delay{100};
  /// Growth of the delay per delayed retry. Default 2.
  double multiplier = 2.0;
  /// Cap on one delay. Default 30 s.
  std::chrono::milliseconds max_delay{30000};
  /// Full jitter. Default true.
  bool jitter = true;
  /// Says which failures are permanent (no retry, straight to dead letters), given the
  /// handler's exception. PermanentError always is. Default: none other.
  std::function<bool(const std::exception_ptr&)> permanent{};
};

/// When a subscriber stops trying while a dependency is down. Closed: events flow. Open: no
/// attempts are made and the backlog waits, for `cooldown`. Half-open: one probe event is
/// tried; success closes the breaker, failure opens it again. Async subscribers only.
struct BreakerPolicy {
  /// Opens after this many consecutive failures. Default 0: no breaker.
  int consecutive_failures = 0;
  /// Or opens when at least this share of the last `window` attempts failed (0 < rate <= 1),
  /// once `window` attempts were seen. Default 0: not used.
  double failure_rate = 0;
  int window = 20;
  /// How long it stays open before the probe. Default 5 s.
  std::chrono::milliseconds cooldown{5000};
};

/// Whether a failing event holds back later ones.
enum class Ordering {
  /// Later events pass a failing one. The default.
  unordered,
  /// A failing event holds back later events with the same partition key (events without a
  /// key share one) until it succeeds or is dead-lettered. Async subscribers only.
  ordered,
};

/// What publish does when an async subscriber's queue (the publishing thread's lane) is full.
enum class Overflow {
  /// Wait for room up to SubscribeOptions::block_timeout, then fail that publish with
  /// Errc::queue_full. The default.
  block,
  /// Fail that publish at once with Errc::queue_full.
  reject,
  /// Drop the oldest queued event of that lane (counted in metrics as dropped) and queue.
  drop_oldest,
};

}  // namespace crier
