#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <crier/crier.hpp>
#include <crier/json.hpp>

namespace bench {

struct Tick {
  std::int64_t value = 1;
};
CRIER_EVENT(Tick, "com.example.bench.tick");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Tick, value)

/// The engine benchmarks' event: about a hundred bytes on the wire as JSON.
struct Payment {
  std::int64_t sent_ns = 0;
  std::string note = "a payment of about a hundred bytes on the wire, with its JSON keys";
};
CRIER_EVENT(Payment, "com.example.bench.payment");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Payment, sent_ns, note)

/// Counts handled events (and their latencies, when given); a benchmark waits on it.
class Handled {
 public:
  void add(std::int64_t latency_ns = 0) {
    std::lock_guard lock(mu_);
    ++n_;
    if (latency_ns) latencies_.push_back(latency_ns);
    if (n_ >= target_) cv_.notify_all();
  }
  void wait_for(std::int64_t n) {
    std::unique_lock lock(mu_);
    target_ = n;
    cv_.wait(lock, [&] { return n_ >= n; });
  }
  std::vector<std::int64_t> latencies() {
    std::lock_guard lock(mu_);
    return latencies_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::int64_t n_ = 0, target_ = 0;
  std::vector<std::int64_t> latencies_;
};

/// An engine's end to end: batches of 64 Payments published, each handled by one subscriber
/// on `bus`, stamped when sent; items/s, and the p50 and p99 latency from publish to handler.
inline void engine_end_to_end(benchmark::State& state, crier::Bus& bus) {
  using Clock = std::chrono::steady_clock;
  auto now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  };
  Handled handled;
  auto sub = bus.subscribe<Payment>("reader", [&](const Payment& p) { handled.add(now_ns() - p.sent_ns); });
  std::int64_t total = 0;
  std::vector<Payment> batch(64);
  for (auto _ : state) {
    const std::int64_t now = now_ns();
    for (auto& p : batch) p.sent_ns = now;
    bus.publish_batch(batch);
    total += static_cast<std::int64_t>(batch.size());
  }
  handled.wait_for(total);
  state.SetItemsProcessed(total);
  auto l = handled.latencies();
  std::sort(l.begin(), l.end());
  if (!l.empty()) {
    state.counters["p50_us"] = static_cast<double>(l[l.size() / 2]) / 1000.0;
    state.counters["p99_us"] = static_cast<double>(l[l.size() * 99 / 100]) / 1000.0;
  }
}

}  // namespace bench
