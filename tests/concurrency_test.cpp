// Many threads at once: publishing, subscribing, unsubscribing. Run under ThreadSanitizer in
// CI; under AddressSanitizer a handler touching freed state after unsubscribe is caught.
#include <gtest/gtest.h>

#include <barrier>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "test_events.hpp"

using namespace test;
using crier::Bus;

namespace {

constexpr int kThreads = 4;
constexpr int kPerThread = 20000;

TEST(Concurrency, ManyPublishersNoEventLost) {
  Bus bus;
  std::atomic<long> inline_sum{0};
  std::atomic<long> async_sum{0};
  auto a = bus.subscribe<Ping>(
      "inline", [&](const Ping& p) { inline_sum.fetch_add(p.n); }, kInline);
  auto b = bus.subscribe<Ping>("async", [&](const Ping& p) { async_sum.fetch_add(p.n); });
  auto c = bus.subscribe<Ping>("async4", [&](const Ping&) {}, {.concurrency = 4});
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 1; i <= kPerThread; ++i) bus.publish(Ping{i});
    });
  threads.clear();
  ASSERT_TRUE(bus.drain(std::chrono::seconds(120)).complete);
  const long expected = static_cast<long>(kThreads) * kPerThread * (kPerThread + 1) / 2;
  EXPECT_EQ(inline_sum.load(), expected);
  EXPECT_EQ(async_sum.load(), expected);
  EXPECT_EQ(stats_of(bus, "async4").delivered, static_cast<std::uint64_t>(kThreads * kPerThread));
}

TEST(Concurrency, ConcurrencyOneKeepsEachPublishersOrder) {
  Bus bus;
  std::vector<int> last(kThreads, -1);
  std::atomic<int> violations{0};
  struct Tagged {
    int thread;
    int seq;
  };
  auto sub = bus.subscribe<Pong>("ordered",
                                 [&](const Pong& p) {
                                   const int t = p.n / kPerThread,
                                             seq = p.n % kPerThread;  // one subscriber run at a time
                                   if (seq != last[t] + 1) violations.fetch_add(1);
                                   last[t] = seq;
                                 },
                                 {.queue_capacity = 1024});
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) bus.publish(Pong{t * kPerThread + i});
    });
  threads.clear();
  ASSERT_TRUE(bus.drain(std::chrono::seconds(120)).complete);
  EXPECT_EQ(violations.load(), 0);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(last[t], kPerThread - 1);
}

TEST(Concurrency, FullQueueMakesThePublisherWaitNotDrop) {
  Bus bus(crier::BusOptions{.worker_threads = 2});
  std::atomic<long> sum{0};
  auto sub = bus.subscribe<Ping>("tiny", [&](const Ping& p) { sum.fetch_add(p.n); }, {.queue_capacity = 4});
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 1; i <= 5000; ++i) bus.publish(Ping{i});
    });
  threads.clear();
  ASSERT_TRUE(bus.drain(std::chrono::seconds(120)).complete);
  EXPECT_EQ(sum.load(), static_cast<long>(kThreads) * 5000 * 5001 / 2);
}

// A subscriber that is subscribed before publishing starts and after it ends gets every
// event, however many others come and go meanwhile; the others' handlers never touch their
// captured state after unsubscribe returned.
TEST(Concurrency, SubscribeAndUnsubscribeWhilePublishing) {
  Bus bus;
  std::atomic<long> stable{0};
  auto keep = bus.subscribe<Ping>(
      "stable", [&](const Ping&) { stable.fetch_add(1); }, kInline);
  auto keep_async = bus.subscribe<Ping>("stable-async", [](const Ping&) {});
  std::atomic<bool> stop{false};
  std::atomic<int> after_unsubscribe{0};
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) bus.publish(Ping{i});
    });
  std::jthread churn([&] {
    for (int round = 0; !stop.load(); ++round) {
      struct State {
        std::atomic<bool> unsubscribed{false};
        std::atomic<long> calls{0};  // inline handlers run on several publishers at once
      };
      auto state = std::make_unique<State>();
      State* s = state.get();
      const auto mode = round % 2 ? crier::DeliveryMode::sync : crier::DeliveryMode::async;
      auto sub =
          bus.subscribe<Ping>("churn",
                              [s, &after_unsubscribe](const Ping&) {
                                if (s->unsubscribed.load()) after_unsubscribe.fetch_add(1);
                                s->calls.fetch_add(1);  // a use-after-free (ASan) if called after unsubscribe returned
                              },
                              {.mode = mode, .concurrency = 1});
      sub.unsubscribe();
      s->unsubscribed.store(true);
      state.reset();  // freed: ASan catches any later call
    }
  });
  threads.clear();
  stop = true;
  churn.join();
  EXPECT_EQ(stable.load(), static_cast<long>(kThreads) * kPerThread);
  EXPECT_EQ(after_unsubscribe.load(), 0);
  EXPECT_TRUE(bus.drain(std::chrono::seconds(60)).complete);
  EXPECT_EQ(stats_of(bus, "stable-async").delivered, static_cast<std::uint64_t>(kThreads * kPerThread));
}

// Unsubscribe called on one thread while the handler runs on another returns only after
// that call finished.
TEST(Concurrency, UnsubscribeWaitsForARunningHandler) {
  for (int round = 0; round < 50; ++round) {
    Bus bus;
    std::latch entered(1);
    std::atomic<bool> release{false}, handler_done{false}, unsubscribed{false};
    std::atomic<bool> done_before_unsubscribe_returned{false};
    auto sub = bus.subscribe<Ping>(
        "slow",
        [&](const Ping&) {
          entered.count_down();
          while (!release.load()) std::this_thread::yield();
          handler_done.store(true);
        },
        kInline);
    std::jthread publisher([&] { bus.publish(Ping{}); });
    entered.wait();
    std::jthread unsubscriber([&] {
      sub.unsubscribe();
      done_before_unsubscribe_returned = handler_done.load();
      unsubscribed = true;
    });
    release = true;
    unsubscriber.join();
    EXPECT_TRUE(done_before_unsubscribe_returned) << "round " << round;
  }
}

TEST(Concurrency, ManyBusesAndThreadsAtOnce) {
  std::vector<std::jthread> threads;
  std::atomic<long> total{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int round = 0; round < 20; ++round) {
        Bus bus(crier::BusOptions{.worker_threads = 1});
        auto a = bus.subscribe<Ping>("a", [&](const Ping&) { total.fetch_add(1); });
        auto b = bus.subscribe<Ping>(
            "b", [&](const Ping&) { total.fetch_add(1); }, kInline);
        for (int i = 0; i < 500; ++i) bus.publish(Ping{i});
        bus.drain();  // before the subscriptions go: unsubscribing discards what is queued
      }
    });
  threads.clear();
  EXPECT_EQ(total.load(), static_cast<long>(kThreads) * 20 * 500 * 2);
}

// drain(d) under any timing: every published event is either handled or counted in
// `undelivered`, exactly, wherever the deadline lands (between runs, inside a batch, while a
// retry waits on the timer, while events wait behind a failing key), and drain returns within
// d plus one handler call per worker (and the scheduler's delays).
TEST(Concurrency, DrainCountsEveryEventLeftExactlyWhateverTheTiming) {
  constexpr int kEvents = 400;
  constexpr int kRounds = 40;
  std::mt19937 random(20261202);
  std::chrono::nanoseconds worst_overshoot{0};
  for (int round = 0; round < kRounds; ++round) {
    const auto handler_time = std::chrono::microseconds(random() % 300);
    const auto deadline = std::chrono::milliseconds(random() % 20);
    auto work = [handler_time] {  // a handler's CPU work (not a wait for anything)
      const auto until = std::chrono::steady_clock::now() + handler_time;
      while (std::chrono::steady_clock::now() < until) {
      }
    };
    std::atomic<int> handled{0};
    std::mutex failed_mu;
    std::set<std::pair<int, int>> failed_once;  // (subscriber, n) that failed their first attempt
    // Fails the first attempt of every third event, so retries wait on the timer and, for the
    // ordered subscriber, later events of the key wait behind them.
    auto fails_first = [&](int subscriber, int n) {
      if (n % 3 != 0) return false;
      std::lock_guard lock(failed_mu);
      return failed_once.emplace(subscriber, n).second;
    };
    const crier::RetryPolicy retry{
        .max_attempts = 2, .immediate_attempts = 1, .initial_delay = std::chrono::milliseconds(2)};
    Bus bus(crier::BusOptions{.worker_threads = 2});
    auto plain = bus.subscribe<Ping>("plain", [&](const Ping&) {
      work();
      handled.fetch_add(1);
    });
    auto retried = bus.subscribe<Ping>("retried",
                                       [&](const Ping& p) {
                                         work();
                                         if (fails_first(1, p.n)) throw std::runtime_error("first attempt");
                                         handled.fetch_add(1);
                                       },
                                       {.retry = retry});
    auto keyed = bus.subscribe<Ping>("keyed",
                                     [&](const Ping& p) {
                                       work();
                                       if (fails_first(2, p.n)) throw std::runtime_error("first attempt");
                                       handled.fetch_add(1);
                                     },
                                     {.concurrency = 2, .retry = retry, .ordering = crier::Ordering::ordered});
    for (int i = 0; i < kEvents; ++i) bus.publish(Ping{i}, {.partition_key = std::to_string(i % 7)});
    const auto start = std::chrono::steady_clock::now();
    const crier::DrainResult r = bus.drain(deadline);
    const auto took = std::chrono::steady_clock::now() - start;
    worst_overshoot = std::max(worst_overshoot, std::chrono::duration_cast<std::chrono::nanoseconds>(took - deadline));
    EXPECT_EQ(static_cast<std::size_t>(handled.load()) + r.undelivered, static_cast<std::size_t>(3 * kEvents))
        << "round " << round << ": handler " << handler_time.count() << " us, deadline " << deadline.count() << " ms";
    EXPECT_EQ(r.complete, r.undelivered == 0) << "round " << round;
  }
  RecordProperty("worst_drain_overshoot_us", static_cast<int>(worst_overshoot.count() / 1000));
}

}  // namespace
