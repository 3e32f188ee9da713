// BM_PublishInline/<impl>/<subs>: one publish to <subs> handlers on the publisher's thread,
// each doing a trivial accumulate into a sink. Baselines in the same run: a plain loop over
// std::vector<std::function>, Boost.Signals2, libsigc++ 3.
#include <benchmark/benchmark.h>

#include <sigc++/sigc++.h>
#include <boost/signals2/signal.hpp>
#include <functional>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "bench_events.hpp"

namespace {

using bench::Tick;

std::int64_t g_sink = 0;

// Runs the timed loop and reports allocations per publish.
template <class Publish>
void run(benchmark::State& state, Publish&& publish) {
  Tick tick{1};
  const auto allocs_before = bench::allocations();
  for (auto _ : state) {
    benchmark::DoNotOptimize(tick);
    publish(tick);
    benchmark::ClobberMemory();
  }
  const auto allocs = bench::allocations() - allocs_before;
  state.counters["allocs_per_op"] = static_cast<double>(allocs) / static_cast<double>(state.iterations());
  benchmark::DoNotOptimize(g_sink);
}

void crier_inline(benchmark::State& state, int n) {
  crier::Bus bus;
  std::vector<crier::Subscription> subs;
  for (int i = 0; i < n; ++i)
    subs.push_back(bus.subscribe<Tick>("s" + std::to_string(i), [](const Tick& t) { g_sink += t.value; },
                                       {.mode = crier::DeliveryMode::sync}));
  run(state, [&](const Tick& t) { bus.publish(t); });
}

void std_function_loop(benchmark::State& state, int n) {
  std::vector<std::function<void(const Tick&)>> handlers;
  for (int i = 0; i < n; ++i) handlers.emplace_back([](const Tick& t) { g_sink += t.value; });
  run(state, [&](const Tick& t) {
    for (auto& h : handlers) h(t);
  });
}

void boost_signals2(benchmark::State& state, int n) {
  boost::signals2::signal<void(const Tick&)> signal;
  for (int i = 0; i < n; ++i) signal.connect([](const Tick& t) { g_sink += t.value; });
  run(state, [&](const Tick& t) { signal(t); });
}

void sigcpp3(benchmark::State& state, int n) {
  sigc::signal<void(const Tick&)> signal;
  for (int i = 0; i < n; ++i) signal.connect([](const Tick& t) { g_sink += t.value; });
  run(state, [&](const Tick& t) { signal.emit(t); });
}

const int kRegistered = [] {
  struct Impl {
    const char* name;
    void (*fn)(benchmark::State&, int);
  };
  for (const Impl impl : {Impl{"crier", crier_inline}, Impl{"std_function_loop", std_function_loop},
                          Impl{"boost_signals2", boost_signals2}, Impl{"sigcpp3", sigcpp3}})
    for (int subs : {1, 4, 16})
      benchmark::RegisterBenchmark((std::string("BM_PublishInline/") + impl.name + "/" + std::to_string(subs)).c_str(),
                                   impl.fn, subs);
  return 0;
}();

}  // namespace
