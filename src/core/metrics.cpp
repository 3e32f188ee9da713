// Metrics snapshots and their Prometheus text exposition.
#include "crier/metrics.hpp"
#include "core_impl.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "crier/detail/core.hpp"
#include "crier/detail/reader.hpp"
#include "dead_letters.hpp"

namespace crier {

const char* to_string(BreakerState s) noexcept {
  switch (s) {
    case BreakerState::closed:
      return "closed";
    case BreakerState::open:
      return "open";
    case BreakerState::half_open:
      return "half_open";
  }
  return "unknown";
}

const char* to_string(Report::Kind kind) noexcept {
  switch (kind) {
    case Report::Kind::handler_failed:
      return "handler_failed";
    case Report::Kind::dead_lettered:
      return "dead_lettered";
    case Report::Kind::breaker_opened:
      return "breaker_opened";
    case Report::Kind::breaker_half_open:
      return "breaker_half_open";
    case Report::Kind::breaker_closed:
      return "breaker_closed";
    case Report::Kind::slow_handler:
      return "slow_handler";
    case Report::Kind::events_discarded:
      return "events_discarded";
    case Report::Kind::drain_deadline:
      return "drain_deadline";
    case Report::Kind::transport_failed:
      return "transport_failed";
    case Report::Kind::connection_lost:
      return "connection_lost";
    case Report::Kind::connection_restored:
      return "connection_restored";
    case Report::Kind::corrupt_event:
      return "corrupt_event";
  }
  return "unknown";
}

std::chrono::nanoseconds LatencyHistogram::quantile(double p) const noexcept {
  if (count == 0) return std::chrono::nanoseconds(0);
  const auto target = static_cast<std::uint64_t>(std::ceil(std::clamp(p, 0.0, 1.0) * static_cast<double>(count)));
  std::uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += buckets[b];
    if (seen >= std::max<std::uint64_t>(target, 1)) {
      const std::uint64_t upper = b == 0 ? 0 : (b >= 63 ? max_ns : (std::uint64_t{1} << b) - 1);
      return std::chrono::nanoseconds(std::min(upper, max_ns));
    }
  }
  return std::chrono::nanoseconds(max_ns);
}

namespace {

std::string labels(const SubscriberMetrics& s) {
  return "event_type=\"" + escape_prometheus_label(s.event_type) + "\",subscriber=\"" +
         escape_prometheus_label(s.name) + "\"";
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

std::string escape_prometheus_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string to_prometheus(const MetricsSnapshot& m) {
  std::string out;
  header(out, "crier_published_total", "counter", "Events published, per event type.");
  for (const auto& t : m.event_types)
    out += "crier_published_total{event_type=\"" + escape_prometheus_label(t.event_type) + "\"} " +
           std::to_string(t.published) + "\n";

  struct Counter {
    const char* name;
    const char* help;
    std::uint64_t SubscriberMetrics::*field;
  };
  const Counter counters[] = {
      {"crier_delivered_total", "Handler calls that returned normally.", &SubscriberMetrics::delivered},
      {"crier_failed_total", "Handler calls that threw.", &SubscriberMetrics::failed},
      {"crier_retried_total", "Attempts after the first.", &SubscriberMetrics::retried},
      {"crier_dead_lettered_total", "Events moved to the dead letters.", &SubscriberMetrics::dead_lettered},
      {"crier_dropped_total", "Events dropped from a full queue (drop_oldest).", &SubscriberMetrics::dropped},
      {"crier_rejected_total", "Publishes refused because the subscriber's queue was full.",
       &SubscriberMetrics::rejected},
      {"crier_slow_calls_total", "Handler calls longer than the subscriber's budget.", &SubscriberMetrics::slow_calls},
      {"crier_breaker_opened_total", "Times the subscriber's circuit breaker opened.",
       &SubscriberMetrics::breaker_opened},
      {"crier_corrupt_total", "Stored events found damaged (and dead-lettered).", &SubscriberMetrics::corrupt},
  };
  for (const Counter& c : counters) {
    header(out, c.name, "counter", c.help);
    for (const auto& s : m.subscribers)
      out += std::string(c.name) + "{" + labels(s) + "} " + std::to_string(s.*c.field) + "\n";
  }
  header(out, "crier_queue_depth", "gauge", "Events waiting: queued, for a retry, or behind a key.");
  for (const auto& s : m.subscribers) out += "crier_queue_depth{" + labels(s) + "} " + std::to_string(s.queued) + "\n";
  header(out, "crier_in_flight", "gauge", "Handler runs scheduled or under way.");
  for (const auto& s : m.subscribers) out += "crier_in_flight{" + labels(s) + "} " + std::to_string(s.in_flight) + "\n";
  header(out, "crier_breaker_state", "gauge", "Circuit breaker: 0 closed, 1 half-open, 2 open.");
  for (const auto& s : m.subscribers) {
    const int v = s.breaker == BreakerState::closed ? 0 : s.breaker == BreakerState::half_open ? 1 : 2;
    out += "crier_breaker_state{" + labels(s) + "} " + std::to_string(v) + "\n";
  }
  header(out, "crier_handler_duration_seconds", "histogram", "Handler call durations (sampled).");
  for (const auto& s : m.subscribers) {
    // Bucket b holds durations below 2^b ns, so "le 2^b ns" counts buckets 0..b.
    std::uint64_t upto[LatencyHistogram::kBuckets + 1] = {};
    for (int b = 0; b < LatencyHistogram::kBuckets; ++b) upto[b + 1] = upto[b] + s.latency.buckets[b];
    const std::string l = labels(s);
    for (int b = 10; b <= 36; b += 2)  // 1 us .. 69 s, a factor 4 apart
      out += "crier_handler_duration_seconds_bucket{" + l + ",le=\"" +
             number(static_cast<double>(std::uint64_t{1} << b) / 1e9) + "\"} " + std::to_string(upto[b + 1]) + "\n";
    out += "crier_handler_duration_seconds_bucket{" + l + ",le=\"+Inf\"} " + std::to_string(s.latency.count) + "\n";
    out +=
        "crier_handler_duration_seconds_sum{" + l + "} " + number(static_cast<double>(s.latency.sum_ns) / 1e9) + "\n";
    out += "crier_handler_duration_seconds_count{" + l + "} " + std::to_string(s.latency.count) + "\n";
  }
  header(out, "crier_dead_letters", "gauge", "Dead letters held.");
  out += "crier_dead_letters " + std::to_string(m.dead_letters) + "\n";
  header(out, "crier_dead_letters_evicted_total", "counter", "Dead letters evicted because the store was full.");
  out += "crier_dead_letters_evicted_total " + std::to_string(m.dead_letters_dropped) + "\n";
  if (!m.transport.empty()) {
    const std::string l = "{transport=\"" + escape_prometheus_label(m.transport) + "\"} ";
    const auto& h = m.transport_health;
    header(out, "crier_transport_connected", "gauge", "1 while the transport is connected to its engine.");
    out += "crier_transport_connected" + l + (h.connected ? "1" : "0") + "\n";
    header(out, "crier_transport_disconnects_total", "counter", "Times the transport lost its engine.");
    out += "crier_transport_disconnects_total" + l + std::to_string(h.disconnects) + "\n";
    header(out, "crier_transport_reconnects_total", "counter", "Times the transport reached its engine again.");
    out += "crier_transport_reconnects_total" + l + std::to_string(h.reconnects) + "\n";
    header(out, "crier_transport_retries_total", "counter", "Requests sent again after a timeout or a lost link.");
    out += "crier_transport_retries_total" + l + std::to_string(h.retries) + "\n";
  }
  return out;
}

namespace detail {

MetricsSnapshot CoreImpl::metrics() const {
  MetricsSnapshot m;
  MutexLock lock(writer_mu_);
  for (const auto& [index, type] : type_names_) {
    const Snapshot* snap = snapshot(index);
    m.event_types.push_back(EventTypeMetrics{type, snap ? counter_total(snap->published_slot) : 0});
  }
  for (const SubscriberBase* s : subscribers_) {
    SubscriberMetrics x;
    x.name = s->name;
    x.event_type = std::string(s->event_type);
    x.mode = s->state().mode;
    x.delivered = s->delivered.load(std::memory_order_relaxed);
    if (s->state().mode == DeliveryMode::sync) {  // first attempts are counted by the publish count
      const Snapshot* snap = snapshot(s->state().type_index);
      const std::uint64_t published = snap ? counter_total(snap->published_slot) - s->state().published_before : 0;
      x.delivered += published - std::min(published, s->first_attempt_failures.load(std::memory_order_relaxed));
    }
    x.failed = s->state().failed.load(std::memory_order_relaxed);
    x.retried = s->state().retried.load(std::memory_order_relaxed);
    x.dead_lettered = s->state().dead_lettered.load(std::memory_order_relaxed);
    x.dropped = s->dropped.load(std::memory_order_relaxed);
    x.rejected = s->rejected.load(std::memory_order_relaxed);
    x.slow_calls = s->state().slow_calls.load(std::memory_order_relaxed);
    x.breaker_opened = s->state().breaker_opened.load(std::memory_order_relaxed);
    x.corrupt = s->state().corrupt.load(std::memory_order_relaxed);
    x.breaker = s->state().breaker_state();
    x.queued = s->state().queued();
    x.in_flight = static_cast<std::size_t>(std::max(0, s->runners.load(std::memory_order_relaxed)));
    for (int b = 0; b < LatencyHistogram::kBuckets; ++b)
      x.latency.buckets[b] = s->state().latency_buckets[b].load(std::memory_order_relaxed);
    x.latency.count = s->state().latency_count.load(std::memory_order_relaxed);
    x.latency.sum_ns = s->state().latency_sum_ns.load(std::memory_order_relaxed);
    x.latency.max_ns = s->state().latency_max_ns.load(std::memory_order_relaxed);
    x.handler_time = std::chrono::nanoseconds(s->busy_ns.load(std::memory_order_relaxed));
    m.subscribers.push_back(std::move(x));
  }
  m.dead_letters = dead_letters_->size();
  m.dead_letters_dropped = dead_letters_->evicted();
  if (transport_) {
    m.transport = std::string(transport_->name());
    m.transport_health = transport_->health();
  }
  return m;
}

}  // namespace detail
}  // namespace crier
