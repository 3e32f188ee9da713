// BM_AsyncThroughput/<impl>/<subs>: one publisher hands events to <subs> subscribers, each
// handled on another thread; items_per_second counts events fully handled (per subscriber).
// Baseline in the same run: moodycamel::ConcurrentQueue in its fastest form (a producer
// token, bulk dequeue of up to 256) feeding one consumer thread per subscriber.
#include <benchmark/benchmark.h>

#include <concurrentqueue/concurrentqueue.h>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.hpp"
#include "bench_events.hpp"

namespace {

using bench::Tick;

constexpr std::int64_t kEventsPerIteration = 1 << 16;

// Per-subscriber handled count: written by one consumer thread only (plain increment of an
// atomic, no read-modify-write), read by the publisher to know when a round is done.
struct alignas(64) Handled {
  std::atomic<std::int64_t> count{0};
  std::int64_t sink = 0;
  void handle(const Tick& t) {
    sink += t.value;
    count.store(count.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
};

void wait_for(const std::vector<std::unique_ptr<Handled>>& handled, std::int64_t target) {
  for (const auto& h : handled)
    while (h->count.load(std::memory_order_acquire) < target) std::this_thread::yield();
}

// items_per_second is computed from wall-clock time (the work happens on other threads),
// set as a plain counter so that the benchmark keeps its exact name (UseRealTime would
// append "/real_time").
template <class Publish>
void run(benchmark::State& state, const std::vector<std::unique_ptr<Handled>>& handled, Publish&& publish) {
  // One untimed round first: queues and lanes are allocated on first use, not per event.
  Tick warm{1};
  for (std::int64_t i = 0; i < kEventsPerIteration; ++i) publish(warm);
  std::int64_t target = kEventsPerIteration;
  wait_for(handled, target);
  std::uint64_t allocs = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const auto before = bench::allocations();
    Tick tick{1};
    for (std::int64_t i = 0; i < kEventsPerIteration; ++i) publish(tick);
    allocs += bench::allocations() - before;
    target += kEventsPerIteration;
    wait_for(handled, target);
  }
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
  const auto events = static_cast<double>(state.iterations()) * kEventsPerIteration;
  state.counters["items_per_second"] = events * static_cast<double>(handled.size()) / wall.count();
  state.counters["allocs_per_op"] = static_cast<double>(allocs) / events;
}

void crier_async(benchmark::State& state, int subscribers) {
  std::vector<std::unique_ptr<Handled>> handled;
  crier::Bus bus;
  std::vector<crier::Subscription> subs;
  for (int i = 0; i < subscribers; ++i) {
    handled.push_back(std::make_unique<Handled>());
    Handled* h = handled.back().get();
    subs.push_back(bus.subscribe<Tick>("s" + std::to_string(i), [h](const Tick& t) { h->handle(t); }));
  }
  run(state, handled, [&](const Tick& t) { bus.publish(t); });
  bus.drain();
}

void concurrentqueue(benchmark::State& state, int subscribers) {
  using Queue = moodycamel::ConcurrentQueue<Tick>;
  const auto n = static_cast<std::size_t>(subscribers);
  std::vector<std::unique_ptr<Handled>> handled;
  std::vector<std::unique_ptr<Queue>> queues;
  std::vector<std::unique_ptr<moodycamel::ProducerToken>> tokens;
  std::atomic<bool> stop{false};
  std::vector<std::jthread> consumers;
  for (std::size_t i = 0; i < n; ++i) {
    handled.push_back(std::make_unique<Handled>());
    queues.push_back(std::make_unique<Queue>(kEventsPerIteration));
    tokens.push_back(std::make_unique<moodycamel::ProducerToken>(*queues.back()));
  }
  for (std::size_t i = 0; i < n; ++i)
    consumers.emplace_back([&, i] {
      Queue& q = *queues[i];
      Handled& h = *handled[i];
      moodycamel::ConsumerToken ctok(q);
      Tick buf[256];
      while (!stop.load(std::memory_order_relaxed)) {
        const std::size_t got = q.try_dequeue_bulk(ctok, buf, 256);
        for (std::size_t k = 0; k < got; ++k) h.handle(buf[k]);
        if (got == 0) __builtin_ia32_pause();
      }
    });
  run(state, handled, [&](const Tick& t) {
    for (std::size_t i = 0; i < n; ++i) queues[i]->enqueue(*tokens[i], t);
  });
  stop = true;
}

const int kRegistered = [] {
  for (int subs : {1, 4}) {
    benchmark::RegisterBenchmark(("BM_AsyncThroughput/crier/" + std::to_string(subs)).c_str(), crier_async, subs);
    benchmark::RegisterBenchmark(("BM_AsyncThroughput/concurrentqueue/" + std::to_string(subs)).c_str(),
                                 concurrentqueue, subs);
  }
  return 0;
}();

}  // namespace
