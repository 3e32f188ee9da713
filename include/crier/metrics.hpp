// Counters of a bus, as a snapshot, and their Prometheus text exposition.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "crier/event.hpp"
#include "crier/export.hpp"
#include "crier/options.hpp"

namespace crier {

/// Handler latency in log2 buckets: bucket b counts durations d (ns) with 2^(b-1) <= d < 2^b.
struct CRIER_EXPORT LatencyHistogram {
  static constexpr int kBuckets = 48;
  std::array<std::uint64_t, kBuckets> buckets{};
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;
  std::uint64_t max_ns = 0;

  /// An upper bound of the p-quantile (0 < p <= 1), from the buckets; 0 when empty.
  std::chrono::nanoseconds quantile(double p) const noexcept;
};

/// State of a subscriber's circuit breaker.
enum class BreakerState { closed, open, half_open };
CRIER_EXPORT const char* to_string(BreakerState s) noexcept;

/// Published on the bus whenever a subscriber's circuit breaker opens (also again, after a
/// failed probe) and when it closes, so that an application can alert on it and the tools
/// (`crier status`, the dashboard) can show it for a bus running in another process. The
/// half-open state is not announced: it begins `cooldown` after an opening. (Breakers of this
/// event's own subscribers are not announced.)
struct BreakerChanged {
  std::string subscriber{};
  std::string event_type{};
  BreakerState state = BreakerState::closed;  ///< open or closed
  std::string reason{};                       ///< why, for people
  std::chrono::milliseconds cooldown{0};      ///< with open: how long until a probe is tried
};
CRIER_EVENT(BreakerChanged, "crier.breakerchanged")
/// Its JSON form (the default codec): state as "open" or "closed", cooldown as cooldown_ms.
CRIER_EXPORT void to_json(nlohmann::json& j, const BreakerChanged& e);
/// Throws nlohmann::json::exception for a state other than closed, open or half_open.
CRIER_EXPORT void from_json(const nlohmann::json& j, BreakerChanged& e);

/// One subscriber's counters.
struct SubscriberMetrics {
  std::string name{};
  std::string event_type{};
  DeliveryMode mode = DeliveryMode::async;
  /// Handler calls that returned normally. For an Inline subscriber, first attempts are
  /// derived from the type's publish count (counting each call would cost every publish), so
  /// a publish racing the subscribe call itself may be counted without reaching it.
  std::uint64_t delivered = 0;
  std::uint64_t failed = 0;          ///< handler calls that threw
  std::uint64_t retried = 0;         ///< attempts after the first
  std::uint64_t dead_lettered = 0;   ///< events given up on
  std::uint64_t dropped = 0;         ///< dropped by Overflow::drop_oldest
  std::uint64_t rejected = 0;        ///< publishes refused because its queue was full
  std::uint64_t slow_calls = 0;      ///< handler calls longer than its budget
  std::uint64_t breaker_opened = 0;  ///< times the breaker opened
  std::uint64_t corrupt = 0;         ///< stored events found damaged (also counted dead_lettered)
  BreakerState breaker = BreakerState::closed;
  std::size_t queued = 0;     ///< waiting in its queue, for a retry, or behind a key
  std::size_t in_flight = 0;  ///< runs scheduled or under way
  /// Handler time (async subscribers; sampled: every call when a budget is set, else one
  /// call in 64 of each publishing thread's queue lane; every call run from the ready list:
  /// retries, redrives, durable events).
  LatencyHistogram latency{};
  std::chrono::nanoseconds handler_time{0};  ///< total time in its handler runs (async)
};

/// One event type's counters.
struct EventTypeMetrics {
  std::string event_type{};
  std::uint64_t published = 0;
};

/// Everything at one moment.
struct MetricsSnapshot {
  std::vector<EventTypeMetrics> event_types{};
  std::vector<SubscriberMetrics> subscribers{};
  std::uint64_t dead_letters = 0;          ///< held now
  std::uint64_t dead_letters_dropped = 0;  ///< evicted because the store was full
  std::string transport{};                 ///< the transport's name; empty for an in-memory bus
  TransportHealth transport_health{};      ///< its link (durable buses)
};

/// Renders a snapshot in the Prometheus text exposition format (version 0.0.4): metrics named
/// crier_*, labelled event_type and subscriber.
CRIER_EXPORT std::string to_prometheus(const MetricsSnapshot& snapshot);

/// A Prometheus label value escaped for the text format (backslash, quote and newline), for
/// tools that expose their own metrics beside the bus's.
CRIER_EXPORT std::string escape_prometheus_label(std::string_view value);

}  // namespace crier
