// BM_FaultIsolation/<case>: 1,000,000 events through 4 async subscribers. In `one_failing`,
// one subscriber throws on every tenth event, with 3 attempts each, so 100,000 events end in
// its dead letters. items_per_second counts the events handled by the three healthy
// subscribers per wall-clock second, up to the moment they are done: how much one failing
// subscriber costs the others. `all_healthy` is the same-run baseline.
//
// Failing is slow (an exception per attempt, an envelope per dead letter): the flaky
// subscriber handles about a million events a second where the healthy ones handle tens of
// millions. With the default Overflow::block its queue would fill and make the publisher
// wait, by design; isolating it means giving it room for its backlog, as here.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_events.hpp"

namespace {

using bench::Tick;

constexpr std::int64_t kEvents = 1'000'000;

struct alignas(64) Count {
  std::atomic<std::int64_t> n{0};
};

void fault_isolation(benchmark::State& state, bool one_failing) {
  double healthy_events = 0, healthy_seconds = 0;
  for (auto _ : state) {
    crier::Bus bus;
    std::vector<std::unique_ptr<Count>> healthy;
    std::vector<crier::Subscription> subs;
    for (int i = 0; i < 3; ++i) {
      healthy.push_back(std::make_unique<Count>());
      Count* c = healthy.back().get();
      subs.push_back(bus.subscribe<Tick>("healthy-" + std::to_string(i), [c](const Tick&) {
        c->n.store(c->n.load(std::memory_order_relaxed) + 1, std::memory_order_release);
      }));
    }
    crier::SubscribeOptions flaky;
    flaky.queue_capacity = std::size_t{1} << 20;
    flaky.retry.max_attempts = 3;
    flaky.retry.immediate_attempts = 3;
    subs.push_back(bus.subscribe<Tick>(
        "flaky",
        [one_failing](const Tick& t) {
          if (one_failing && t.value % 10 == 0) throw std::runtime_error("every tenth event fails");
        },
        flaky));

    const auto start = std::chrono::steady_clock::now();
    for (std::int64_t i = 0; i < kEvents; ++i) bus.publish(Tick{i});
    for (const auto& c : healthy)
      while (c->n.load(std::memory_order_acquire) < kEvents) std::this_thread::yield();
    healthy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    healthy_events += 3.0 * kEvents;
    state.PauseTiming();
    bus.drain(std::chrono::seconds(120));
    if (one_failing && bus.metrics().subscribers.back().dead_lettered != static_cast<std::uint64_t>(kEvents / 10))
      state.SkipWithError("the failing subscriber's counts do not add up");
    state.ResumeTiming();
  }
  state.counters["items_per_second"] = healthy_events / healthy_seconds;
}

const int kRegistered = [] {
  benchmark::RegisterBenchmark("BM_FaultIsolation/all_healthy", fault_isolation, false);
  benchmark::RegisterBenchmark("BM_FaultIsolation/one_failing", fault_isolation, true);
  return 0;
}();

}  // namespace
