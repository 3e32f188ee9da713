// Failure handling: retries, dead letters, the circuit breaker, ordering, back-pressure,
// budgets and metrics. Time is a ManualClock: nothing here sleeps or waits for a real delay.
#include <gtest/gtest.h>

#include <dirent.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <latch>
#include <sstream>
#include <thread>

#include "test_events.hpp"

using namespace test;
using namespace std::chrono_literals;
using crier::Bus;
using crier::Report;

namespace {

struct Env {
  std::shared_ptr<crier::ManualClock> clock = std::make_shared<crier::ManualClock>();
  Failures failures;
  crier::BusOptions options() {
    auto o = failures.options();
    o.clock = clock;
    return o;
  }
};

crier::RetryPolicy delayed(int attempts, std::chrono::milliseconds first, std::chrono::milliseconds cap) {
  crier::RetryPolicy r;
  r.max_attempts = attempts;
  r.initial_delay = first;
  r.max_delay = cap;
  r.jitter = false;
  return r;
}

// --- retries -----------------------------------------------------------------------------

TEST(Retry, ImmediateAttemptsThenSuccessAsync) {
  Env env;
  Bus bus(env.options());
  std::mutex mu;
  std::vector<int> attempts;
  auto sub = bus.subscribe<Ping>("flaky",
                                 [&](const Ping&, crier::Delivery& d) {
                                   std::lock_guard lock(mu);
                                   attempts.push_back(d.attempt());
                                   if (d.attempt() < 3) throw std::runtime_error("not yet");
                                 },
                                 {.retry = immediate(3)});
  bus.publish(Ping{});
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(attempts, (std::vector<int>{1, 2, 3}));
  const auto m = stats_of(bus, "flaky");
  EXPECT_EQ(m.delivered, 1u);
  EXPECT_EQ(m.failed, 2u);
  EXPECT_EQ(m.retried, 2u);
  EXPECT_EQ(m.dead_lettered, 0u);
}

TEST(Retry, ImmediateAttemptsInline) {
  Env env;
  Bus bus(env.options());
  int calls = 0;
  auto sub = bus.subscribe<Ping>("flaky",
                                 [&](const Ping&) {
                                   if (++calls < 2) throw std::runtime_error("once");
                                 },
                                 {.mode = crier::DeliveryMode::sync, .retry = immediate(2)});
  bus.publish(Ping{});
  EXPECT_EQ(calls, 2);  // both on the publisher's thread, before publish returned
  EXPECT_EQ(stats_of(bus, "flaky").delivered, 1u);
  EXPECT_EQ(bus.dead_letter_count(), 0u);
}

TEST(Retry, DelayedAttemptsFollowTheBackoffOnTheClock) {
  Env env;
  Bus bus(env.options());
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<Ping>("down",
                                 [&](const Ping&) {
                                   calls.fetch_add(1);
                                   throw std::runtime_error("down");
                                 },
                                 {.retry = delayed(5, 100ms, 300ms)});
  bus.publish(Ping{});
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(stats_of(bus, "down").queued, 1u);  // waiting on the timer, holding no thread
  // Delays 100, 200, 300 (capped), 300 ms: each retry comes exactly when due, not before.
  for (auto delay : {100ms, 200ms, 300ms, 300ms}) {
    env.clock->advance(delay - 1ms);
    ASSERT_TRUE(bus.flush());
    const int before = calls.load();
    env.clock->advance(1ms);
    ASSERT_TRUE(bus.flush());
    EXPECT_EQ(calls.load(), before + 1) << "after a delay of " << delay.count() << " ms";
  }
  EXPECT_EQ(calls.load(), 5);
  const auto m = stats_of(bus, "down");
  EXPECT_EQ(m.dead_lettered, 1u);
  EXPECT_EQ(m.retried, 4u);
  EXPECT_EQ(m.queued, 0u);
}

TEST(Retry, FullJitterStaysWithinTheCap) {
  Env env;
  Bus bus(env.options());
  std::atomic<int> calls{0};
  auto policy = delayed(2, 1000ms, 1000ms);
  policy.jitter = true;
  auto sub = bus.subscribe<Ping>("jittery",
                                 [&](const Ping&, crier::Delivery& d) {
                                   calls.fetch_add(1);
                                   if (d.attempt() == 1) throw std::runtime_error("first attempt fails");
                                 },
                                 {.concurrency = 4, .retry = policy});
  for (int i = 0; i < 50; ++i) bus.publish(Ping{i});
  ASSERT_TRUE(bus.flush());
  env.clock->advance(1000ms);  // every jittered delay is at most the cap
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(stats_of(bus, "jittery").queued, 0u);
  EXPECT_EQ(bus.dead_letter_count(), 0u);
  EXPECT_EQ(calls.load(), 100);
}

TEST(Retry, PermanentErrorsGoStraightToDeadLetters) {
  Env env;
  Bus bus(env.options());
  auto policy = immediate(5);
  policy.permanent = [](const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::invalid_argument&) {
      return true;
    } catch (...) {
      return false;
    }
  };
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<Ping>("strict",
                                 [&](const Ping& p) {
                                   calls.fetch_add(1);
                                   if (p.n == 1) throw crier::PermanentError("never valid");
                                   throw std::invalid_argument("malformed");
                                 },
                                 {.retry = policy});
  bus.publish(Ping{1});
  bus.publish(Ping{2});
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(calls.load(), 2);
  const auto letters = bus.dead_letters();
  ASSERT_EQ(letters.size(), 2u);
  EXPECT_EQ(letters[0].attempts, 1);
  EXPECT_EQ(letters[0].last_error, "never valid");
  EXPECT_EQ(letters[1].last_error, "malformed");
}

// --- dead letters ------------------------------------------------------------------------

TEST(DeadLetters, KeepTheEventTheErrorsAndTheTimes) {
  Env env;
  Bus bus(env.options());
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<Order>(
      "billing", [&](const Order&) { throw std::runtime_error("boom " + std::to_string(calls.fetch_add(1) + 1)); },
      {.retry = delayed(2, 1000ms, 1000ms)});
  crier::Attributes attrs;
  attrs.subject = "o-9";
  const auto first_wall = env.clock->wall_now();
  bus.publish(Order{"o-9", 4}, attrs);
  ASSERT_TRUE(bus.flush());
  env.clock->advance(1000ms);
  ASSERT_TRUE(bus.flush());
  const auto letters = bus.dead_letters({.subscriber = "billing"});
  ASSERT_EQ(letters.size(), 1u);
  const crier::DeadLetter& d = letters[0];
  EXPECT_EQ(d.subscriber, "billing");
  EXPECT_EQ(d.attempts, 2);
  EXPECT_EQ(d.first_error, "boom 1");
  EXPECT_EQ(d.last_error, "boom 2");
  EXPECT_EQ(d.first_failure, first_wall);
  EXPECT_EQ(d.last_failure, first_wall + 1000ms);
  EXPECT_EQ(d.envelope.type, "com.example.test.order");
  EXPECT_EQ(d.envelope.subject, "o-9");
  EXPECT_EQ(nlohmann::json::parse(d.envelope.data), (nlohmann::json{{"id", "o-9"}, {"quantity", 4}}));
  EXPECT_NO_THROW(crier::Uuid::parse(d.envelope.id));
  EXPECT_EQ(bus.dead_letter_count({.event_type = "com.example.test.order"}), 1u);
  EXPECT_EQ(bus.dead_letter_count({.subscriber = "someone-else"}), 0u);
  EXPECT_EQ(bus.purge({.ids = {d.id}}), 1u);
  EXPECT_EQ(bus.dead_letter_count(), 0u);
}

TEST(DeadLetters, RedriveSendsThemBackWithAFreshAttemptCount) {
  Env env;
  Bus bus(env.options());
  std::atomic<bool> broken{true};
  std::mutex mu;
  std::vector<int> attempts;
  auto sub = bus.subscribe<Ping>("inventory",
                                 [&](const Ping&, crier::Delivery& d) {
                                   {
                                     std::lock_guard lock(mu);
                                     attempts.push_back(d.attempt());
                                   }
                                   if (broken) throw std::runtime_error("database down");
                                 },
                                 {.retry = immediate(2)});
  for (int i = 0; i < 3; ++i) bus.publish(Ping{i});
  ASSERT_TRUE(bus.flush());
  ASSERT_EQ(bus.dead_letter_count(), 3u);
  broken = false;
  EXPECT_EQ(bus.redrive({.subscriber = "inventory"}), 3u);
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(bus.dead_letter_count(), 0u);
  EXPECT_EQ(attempts, (std::vector<int>{1, 2, 1, 2, 1, 2, 1, 1, 1}));
  EXPECT_EQ(stats_of(bus, "inventory").delivered, 3u);
}

TEST(DeadLetters, RedriveWithoutTheSubscriberKeepsThem) {
  Env env;
  Bus bus(env.options());
  auto sub = bus.subscribe<Ping>("gone", [](const Ping&) { throw std::runtime_error("x"); });
  bus.publish(Ping{});
  ASSERT_TRUE(bus.flush());
  sub.unsubscribe();
  EXPECT_EQ(bus.redrive(), 0u);
  EXPECT_EQ(bus.dead_letter_count(), 1u);
  auto again = bus.subscribe<Ping>("gone", [](const Ping&) {});
  EXPECT_EQ(bus.redrive(), 1u);
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(stats_of(bus, "gone").delivered, 1u);
}

TEST(DeadLetters, AreAnnouncedOnTheBus) {
  Env env;
  Bus bus(env.options());
  std::vector<crier::DeadLettered> seen;
  crier::Uuid failed_id, announcement_cause;
  auto alerts = bus.subscribe<crier::DeadLettered>(
      "alerts",
      [&](const crier::DeadLettered& d, crier::Delivery& del) {
        seen.push_back(d);
        announcement_cause = del.causation_id();
      },
      kInline);
  auto sub = bus.subscribe<Ping>("payments",
                                 [&](const Ping&, crier::Delivery& d) {
                                   failed_id = d.id();
                                   throw std::runtime_error("card declined");
                                 },
                                 {.mode = crier::DeliveryMode::sync});
  bus.publish(Ping{});
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].subscriber, "payments");
  EXPECT_EQ(seen[0].event_type, "com.example.test.ping");
  EXPECT_EQ(seen[0].last_error, "card declined");
  EXPECT_EQ(seen[0].attempts, 1);
  EXPECT_EQ(seen[0].event_id, failed_id.to_string());
  EXPECT_EQ(announcement_cause, failed_id);
  EXPECT_EQ(bus.dead_letters()[0].id, seen[0].dead_letter_id);
}

TEST(DeadLetters, TheStoreIsBoundedAndCountsEvictions) {
  Env env;
  auto o = env.options();
  o.dead_letter_capacity = 3;
  Bus bus(o);
  auto sub = bus.subscribe<Ping>(
      "x", [](const Ping& p) { throw std::runtime_error(std::to_string(p.n)); }, kInline);
  for (int i = 1; i <= 5; ++i) bus.publish(Ping{i});
  const auto letters = bus.dead_letters();
  ASSERT_EQ(letters.size(), 3u);
  EXPECT_EQ(letters.front().last_error, "3");  // the oldest went first
  EXPECT_EQ(letters.back().last_error, "5");
  EXPECT_EQ(bus.metrics().dead_letters_dropped, 2u);
}

// --- ordering ----------------------------------------------------------------------------

std::vector<std::string> run_keyed(crier::Ordering ordering) {
  Env env;
  Bus bus(env.options());
  std::mutex mu;
  std::vector<std::string> handled;
  std::atomic<bool> failed_once{false};
  auto sub = bus.subscribe<Order>("shipping",
                                  [&](const Order& o, crier::Delivery& d) {
                                    const std::string tag = std::string(d.partition_key()) + "-" + o.id;
                                    if (tag == "A-1" && !failed_once.exchange(true))
                                      throw std::runtime_error("carrier down");
                                    std::lock_guard lock(mu);
                                    handled.push_back(tag);
                                  },
                                  {.retry = delayed(3, 1000ms, 1000ms), .ordering = ordering});
  for (auto [key, id] : {std::pair{"A", "1"}, {"A", "2"}, {"B", "1"}, {"A", "3"}, {"B", "2"}}) {
    crier::Attributes a;
    a.partition_key = key;
    bus.publish(Order{id, 1}, a);
  }
  EXPECT_TRUE(bus.flush());
  env.clock->advance(1000ms);
  EXPECT_TRUE(bus.flush());
  return handled;
}

TEST(Ordering, OrderedHoldsBackOnlyTheFailingKey) {
  EXPECT_EQ(run_keyed(crier::Ordering::ordered), (std::vector<std::string>{"B-1", "B-2", "A-1", "A-2", "A-3"}));
}

TEST(Ordering, UnorderedLetsLaterEventsPass) {
  EXPECT_EQ(run_keyed(crier::Ordering::unordered), (std::vector<std::string>{"A-2", "B-1", "A-3", "B-2", "A-1"}));
}

TEST(Ordering, OrderedWithConcurrencyKeepsEachKeyInOrder) {
  Env env;
  Bus bus(env.options());
  std::mutex mu;
  std::map<std::string, std::vector<int>> seen;
  auto sub = bus.subscribe<Ping>("keyed",
                                 [&](const Ping& p, crier::Delivery& d) {
                                   std::lock_guard lock(mu);
                                   seen[std::string(d.partition_key())].push_back(p.n);
                                 },
                                 {.concurrency = 4, .ordering = crier::Ordering::ordered});
  for (int i = 0; i < 4000; ++i) {
    crier::Attributes a;
    a.partition_key = "k" + std::to_string(i % 7);
    bus.publish(Ping{i}, a);
  }
  ASSERT_TRUE(bus.flush());
  for (auto& [key, ns] : seen) EXPECT_TRUE(std::is_sorted(ns.begin(), ns.end())) << key;
  EXPECT_EQ(stats_of(bus, "keyed").delivered, 4000u);
}

// --- circuit breaker -----------------------------------------------------------------------

TEST(Breaker, OpensPausesProbesAndCloses) {
  Env env;
  Bus bus(env.options());
  std::atomic<bool> down{true};
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<Ping>("inventory",
                                 [&](const Ping&) {
                                   calls.fetch_add(1);
                                   if (down) throw std::runtime_error("database down");
                                 },
                                 {.breaker = {.consecutive_failures = 3, .cooldown = 10s}});
  for (int i = 0; i < 10; ++i) bus.publish(Ping{i});
  ASSERT_TRUE(bus.flush());
  auto m = stats_of(bus, "inventory");
  EXPECT_EQ(calls.load(), 3);  // then it stopped trying
  EXPECT_EQ(m.breaker, crier::BreakerState::open);
  EXPECT_EQ(m.queued, 7u);  // the backlog waits
  EXPECT_EQ(env.failures.count(Report::Kind::breaker_opened), 1u);

  env.clock->advance(9s);
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(calls.load(), 3);  // no attempt is spent while it is open

  env.clock->advance(1s);  // half-open: one probe, which fails
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(calls.load(), 4);
  EXPECT_EQ(stats_of(bus, "inventory").breaker, crier::BreakerState::open);

  down = false;
  env.clock->advance(10s);  // the probe succeeds; the backlog flows
  ASSERT_TRUE(bus.flush());
  m = stats_of(bus, "inventory");
  EXPECT_EQ(calls.load(), 10);
  EXPECT_EQ(m.breaker, crier::BreakerState::closed);
  EXPECT_EQ(m.delivered, 6u);
  EXPECT_EQ(m.dead_lettered, 4u);
  EXPECT_EQ(m.breaker_opened, 2u);
  EXPECT_EQ(env.failures.count(Report::Kind::breaker_half_open), 2u);
  EXPECT_EQ(env.failures.count(Report::Kind::breaker_closed), 1u);
}

TEST(Breaker, ItsOpeningsAndClosingAreAnnouncedOnTheBus) {
  Env env;
  Bus bus(env.options());
  std::vector<crier::BreakerChanged> seen;
  auto alerts = bus.subscribe<crier::BreakerChanged>(
      "alerts", [&](const crier::BreakerChanged& b) { seen.push_back(b); }, kInline);
  // A failing subscriber of the announcements is not announced itself (no loops).
  auto loud = bus.subscribe<crier::BreakerChanged>(
      "loud", [](const crier::BreakerChanged&) { throw std::runtime_error("pager down"); },
      {.breaker = {.consecutive_failures = 1, .cooldown = 1s}});
  std::atomic<bool> down{true};
  auto sub = bus.subscribe<Ping>("inventory",
                                 [&](const Ping&) {
                                   if (down) throw std::runtime_error("database down");
                                 },
                                 {.breaker = {.consecutive_failures = 2, .cooldown = 10s}});
  bus.publish(Ping{1});
  bus.publish(Ping{2});
  ASSERT_TRUE(bus.flush());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].subscriber, "inventory");
  EXPECT_EQ(seen[0].event_type, "com.example.test.ping");
  EXPECT_EQ(seen[0].state, crier::BreakerState::open);
  EXPECT_EQ(seen[0].reason, "circuit opened after 2 consecutive failures");
  EXPECT_EQ(seen[0].cooldown, 10s);
  EXPECT_EQ(stats_of(bus, "loud").breaker, crier::BreakerState::open);

  down = false;
  env.clock->advance(10s);  // half-open: the next event is the probe, and succeeds
  bus.publish(Ping{3});
  ASSERT_TRUE(bus.flush());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].state, crier::BreakerState::closed);
  EXPECT_EQ(seen[1].reason, "probe succeeded: circuit closed");

  // Its JSON form, as a durable bus stores it, reads back the same.
  using Codec = crier::Codec<crier::BreakerChanged>;
  const auto back = Codec::decode(Codec::encode(seen[0]));
  EXPECT_EQ(back.state, crier::BreakerState::open);
  EXPECT_EQ(back.cooldown, 10s);
  EXPECT_EQ(back.reason, seen[0].reason);
  // A cooldown that is not a whole number of milliseconds is a codec error, never converted.
  for (const char* cooldown : {"1e300", "2.5", "\"10s\""}) {
    const std::string json = R"({"subscriber":"s","event_type":"t","state":"open","reason":"r","cooldown_ms":)" +
                             std::string(cooldown) + "}";
    EXPECT_THROW((void)Codec::decode(json), crier::Error) << json;
  }
}

TEST(Breaker, OpensOnAFailureRate) {
  Env env;
  Bus bus(env.options());
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<Ping>("half",
                                 [&](const Ping& p) {
                                   calls.fetch_add(1);
                                   if (p.n % 2) throw std::runtime_error("odd");
                                 },
                                 {.breaker = {.failure_rate = 0.5, .window = 4, .cooldown = 1s}});
  for (int i = 1; i <= 10; ++i) bus.publish(Ping{i});
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(calls.load(), 5);  // f s f s f: 2 of the last 4 failed once the window was full
  EXPECT_EQ(stats_of(bus, "half").breaker, crier::BreakerState::open);
}

TEST(Breaker, RetriesWaitForItInsteadOfSpendingAttempts) {
  Env env;
  Bus bus(env.options());
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<Ping>("x",
                                 [&](const Ping&) {
                                   calls.fetch_add(1);
                                   throw std::runtime_error("down");
                                 },
                                 {.retry = immediate(5), .breaker = {.consecutive_failures = 2, .cooldown = 1s}});
  bus.publish(Ping{});
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(calls.load(), 2);  // the breaker opened mid-retries: attempts 3..5 wait for it
  EXPECT_EQ(bus.dead_letter_count(), 0u);
  EXPECT_EQ(stats_of(bus, "x").queued, 1u);
}

// --- back-pressure -------------------------------------------------------------------------

struct Blocked {
  std::latch started{1};
  std::latch release{1};
  std::atomic<int> handled{0};
  void operator()(const Ping& p) {
    if (p.n == 0) {
      started.count_down();
      release.wait();
    }
    handled.fetch_add(1);
  }
};

TEST(Overflow, RejectFailsThePublishAtOnceAndSparesOthers) {
  Env env;
  Bus bus(env.options());
  Blocked slow;
  std::atomic<int> fast_seen{0};
  auto s1 = bus.subscribe<Ping>("slow", std::ref(slow), {.queue_capacity = 4, .overflow = crier::Overflow::reject});
  auto s2 = bus.subscribe<Ping>(
      "fast", [&](const Ping&) { fast_seen.fetch_add(1); }, kInline);
  bus.publish(Ping{0});
  slow.started.wait();
  int accepted = 1, rejected = 0;
  for (int i = 1; i <= 10; ++i) {
    try {
      bus.publish(Ping{i});
      ++accepted;
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::queue_full);
      EXPECT_NE(std::string(e.what()).find("slow"), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(fast_seen.load(), 11);  // the other subscriber had every event
  slow.release.count_down();
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(slow.handled.load(), accepted);
  EXPECT_EQ(stats_of(bus, "slow").rejected, static_cast<std::uint64_t>(rejected));
}

TEST(Overflow, BlockWaitsThenFailsAtTheDeadline) {
  Env env;
  Bus bus(env.options());
  Blocked slow;
  auto s1 = bus.subscribe<Ping>("slow", std::ref(slow), {.queue_capacity = 2, .block_timeout = 20ms});
  bus.publish(Ping{0});
  slow.started.wait();
  std::string error;
  for (int i = 1; i <= 4 && error.empty(); ++i) {
    try {
      bus.publish(Ping{i});
    } catch (const crier::Error& e) {
      error = e.what();
    }
  }
  EXPECT_NE(error.find("deadline"), std::string::npos) << error;
  slow.release.count_down();
  ASSERT_TRUE(bus.flush());
}

TEST(Overflow, BlockResumesWhenRoomAppears) {
  Env env;
  Bus bus(env.options());
  std::atomic<long> sum{0};
  auto s1 = bus.subscribe<Ping>("narrow", [&](const Ping& p) { sum.fetch_add(p.n); }, {.queue_capacity = 2});
  for (int i = 1; i <= 2000; ++i) bus.publish(Ping{i});
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(sum.load(), 2000L * 2001 / 2);
}

TEST(Overflow, DropOldestKeepsTheNewestAndCounts) {
  Env env;
  Bus bus(env.options());
  Blocked slow;
  auto s1 =
      bus.subscribe<Ping>("lossy", std::ref(slow), {.queue_capacity = 4, .overflow = crier::Overflow::drop_oldest});
  bus.publish(Ping{0});
  slow.started.wait();
  for (int i = 1; i <= 20; ++i) EXPECT_NO_THROW(bus.publish(Ping{i}));
  slow.release.count_down();
  ASSERT_TRUE(bus.flush());
  const auto m = stats_of(bus, "lossy");
  EXPECT_GT(m.dropped, 0u);
  EXPECT_EQ(m.dropped + static_cast<std::uint64_t>(slow.handled.load()), 21u);  // nothing vanished uncounted
}

// --- budgets and metrics -------------------------------------------------------------------

TEST(Budget, ASlowHandlerIsCountedAndNamed) {
  Env env;
  Bus bus(env.options());
  auto sub = bus.subscribe<Ping>("sluggish",
                                 [&](const Ping& p) {
                                   if (p.n == 1) env.clock->advance(2s);  // the call "takes" two seconds
                                 },
                                 {.handler_budget = 1s});
  bus.publish(Ping{0});
  bus.publish(Ping{1});
  ASSERT_TRUE(bus.flush());
  EXPECT_EQ(stats_of(bus, "sluggish").slow_calls, 1u);
  ASSERT_EQ(env.failures.count(Report::Kind::slow_handler), 1u);
  std::lock_guard lock(env.failures.mu);
  bool named = false;
  for (const auto& m : env.failures.all) named = named || m.find("over its budget") != std::string::npos;
  EXPECT_TRUE(named);
}

TEST(Metrics, CountEverythingPerTypeAndSubscriber) {
  Env env;
  Bus bus(env.options());
  auto a = bus.subscribe<Ping>(
      "inline",
      [](const Ping& p) {
        if (p.n == 3) throw std::runtime_error("three");
      },
      kInline);
  auto b = bus.subscribe<Ping>("async", [](const Ping&) {}, {.retry = immediate(2)});
  for (int i = 0; i < 10; ++i) bus.publish(Ping{i});
  bus.publish(Pong{});
  ASSERT_TRUE(bus.flush());
  const auto m = bus.metrics();
  std::map<std::string, std::uint64_t> published;
  for (const auto& t : m.event_types) published[t.event_type] = t.published;
  EXPECT_EQ(published["com.example.test.ping"], 10u);
  EXPECT_EQ(published["com.example.test.pong"], 1u);  // no subscriber: still counted
  const auto in = stats_of(bus, "inline");
  EXPECT_EQ(in.delivered, 9u);
  EXPECT_EQ(in.failed, 1u);
  EXPECT_EQ(in.dead_lettered, 1u);
  const auto as = stats_of(bus, "async");
  EXPECT_EQ(as.delivered, 10u);
  EXPECT_GE(as.latency.count, 1u);
  EXPECT_LE(as.latency.quantile(0.5).count(), as.latency.quantile(0.99).count());
  EXPECT_EQ(m.dead_letters, 1u);
}

TEST(Metrics, HistogramQuantilesAreUpperBounds) {
  crier::LatencyHistogram h;
  h.buckets[11] = 90;  // [1024, 2048) ns
  h.buckets[21] = 10;  // [1 ms, 2 ms)
  h.count = 100;
  h.max_ns = 1'500'000;
  EXPECT_EQ(h.quantile(0.5).count(), 2047);
  EXPECT_EQ(h.quantile(0.9).count(), 2047);
  EXPECT_EQ(h.quantile(0.99).count(), 1'500'000);  // never above the maximum
  EXPECT_EQ(crier::LatencyHistogram{}.quantile(0.5).count(), 0);
}

TEST(Metrics, PrometheusTextPassesPromtool) {
  Env env;
  Bus bus(env.options());
  auto a = bus.subscribe<Ping>(
      "audit", [](const Ping&) {}, kInline);
  auto b = bus.subscribe<Order>("billing", [](const Order&) { throw std::runtime_error("x"); });
  bus.publish(Ping{});
  bus.publish(Order{"o", 1});
  ASSERT_TRUE(bus.flush());
  const std::string text = crier::to_prometheus(bus.metrics());
  EXPECT_NE(text.find("crier_published_total{event_type=\"com.example.test.ping\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("crier_failed_total{event_type=\"com.example.test.order\",subscriber=\"billing\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("crier_handler_duration_seconds_bucket{"), std::string::npos);
  if (std::system("command -v promtool >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "promtool not installed (Debian package 'prometheus'): the text was not linted";
  char path[] = "/tmp/crier-metrics-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  const int rc = std::system(("promtool check metrics < " + std::string(path) + " > " + path + ".out 2>&1").c_str());
  std::ifstream out(std::string(path) + ".out");
  const std::string report((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  std::remove(path);
  std::remove((std::string(path) + ".out").c_str());
  EXPECT_EQ(rc, 0) << report << "\n" << text;
}

// --- scale ---------------------------------------------------------------------------------

TEST(FaultIsolation, CountsAddUpAndThePublisherSeesNothing) {
  constexpr int kEvents = 100000;
  Bus bus;
  std::vector<crier::Subscription> subs;
  for (const char* name : {"healthy-1", "healthy-2", "healthy-3"})
    subs.push_back(bus.subscribe<Ping>(name, [](const Ping&) {}));
  subs.push_back(bus.subscribe<Ping>("failing",
                                     [](const Ping& p) {
                                       if (p.n % 10 == 0) throw std::runtime_error("every tenth");
                                     },
                                     {.retry = immediate(3)}));
  for (int i = 0; i < kEvents; ++i) ASSERT_NO_THROW(bus.publish(Ping{i}));
  ASSERT_TRUE(bus.flush(std::chrono::seconds(120)));
  for (const char* name : {"healthy-1", "healthy-2", "healthy-3"}) {
    const auto m = stats_of(bus, name);
    EXPECT_EQ(m.delivered, static_cast<std::uint64_t>(kEvents)) << name;
    EXPECT_EQ(m.failed, 0u) << name;
  }
  const auto f = stats_of(bus, "failing");
  EXPECT_EQ(f.delivered + f.dead_lettered, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(f.dead_lettered, static_cast<std::uint64_t>(kEvents / 10));
  EXPECT_EQ(f.failed, static_cast<std::uint64_t>(3 * kEvents / 10));
}

// How many of this process's threads run at the given nice value.
int threads_at_nice(int nice) {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream stat(std::string("/proc/self/task/") + e->d_name + "/stat");
      std::string line;
      std::getline(stat, line);
      std::istringstream fields(line.substr(line.rfind(')') + 2));  // after "pid (comm) "
      std::string field;
      for (int i = 3; i <= 19 && fields >> field; ++i) {  // field 19 is the nice value
      }
      if (field == std::to_string(nice)) ++n;
    }
    closedir(d);
  }
  return n;
}

// With a single worker thread, a subscriber whose batches keep failing moves to the background
// thread: even while one of its handlers is stuck there, a healthy subscriber keeps up. That
// thread runs at the lowest priority, so it only gets CPU the others leave.
TEST(FaultIsolation, AFailingSubscriberCannotHoldTheWorkers) {
  constexpr int kFirst = 300;  // more than one batch: the stuck event is past the first
  crier::BusOptions options;
  options.worker_threads = 1;
  Bus bus(options);
  std::mutex mu;
  std::condition_variable cv;
  int healthy = 0;
  auto h = bus.subscribe<Ping>("healthy", [&](const Ping&) {
    std::lock_guard lock(mu);
    ++healthy;
    cv.notify_all();
  });
  std::latch stuck(1), release(1);
  auto f = bus.subscribe<Ping>("failing",
                               [&](const Ping& p) {
                                 if (p.n == kFirst - 1) {
                                   stuck.count_down();
                                   release.wait();
                                 }
                                 throw std::runtime_error("always fails");
                               },
                               {.retry = immediate(1)});
  EXPECT_EQ(threads_at_nice(19), 1);
  for (int i = 0; i < kFirst; ++i) bus.publish(Ping{i});
  stuck.wait();
  bus.publish(Ping{kFirst});
  bool kept_up;
  {
    std::unique_lock lock(mu);
    kept_up = cv.wait_for(lock, 30s, [&] { return healthy == kFirst + 1; });
  }
  release.count_down();
  EXPECT_TRUE(kept_up) << "the healthy subscriber handled " << healthy << " of " << kFirst + 1;
  ASSERT_TRUE(bus.flush(std::chrono::seconds(30)));
  EXPECT_EQ(stats_of(bus, "failing").dead_lettered, static_cast<std::uint64_t>(kFirst + 1));
}

std::size_t thread_count() {
  std::size_t n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

std::size_t resident_bytes() {
  long pages = 0, resident = 0;
  std::ifstream("/proc/self/statm") >> pages >> resident;
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

TEST(Scale, HundredThousandWaitingRetriesCostNoThreadAndLittleMemory) {
  constexpr int kEvents = 100000;
  Env env;
  Bus bus(env.options());
  auto sub = bus.subscribe<Ping>("later",
                                 [](const Ping&, crier::Delivery& d) {
                                   if (d.attempt() == 1) throw std::runtime_error("not now");
                                 },
                                 {.retry = delayed(2, std::chrono::hours(1), std::chrono::hours(1))});
  bus.publish(Ping{-1});
  ASSERT_TRUE(bus.flush());  // one retry waiting: the timer thread exists now
  const std::size_t threads = thread_count();
  const std::size_t before = resident_bytes();
  for (int i = 0; i < kEvents; ++i) bus.publish(Ping{i});
  ASSERT_TRUE(bus.flush(std::chrono::seconds(120)));
  const std::size_t grown = resident_bytes() - std::min(before, resident_bytes());
  EXPECT_EQ(stats_of(bus, "later").queued, static_cast<std::size_t>(kEvents + 1));
  EXPECT_EQ(thread_count(), threads);
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(grown, 200u << 20);  // sanitizers' shadow memory would make this meaningless
#endif
  std::printf("[ figures  ] %d waiting retries: %.1f MB resident growth, %zu threads\n", kEvents,
              static_cast<double>(grown) / (1 << 20), threads);
  env.clock->advance(std::chrono::hours(1));
  ASSERT_TRUE(bus.flush(std::chrono::seconds(120)));
  EXPECT_EQ(stats_of(bus, "later").delivered, static_cast<std::uint64_t>(kEvents + 1));
}

TEST(Drain, ReportsRetriesStillWaiting) {
  Env env;
  Bus bus(env.options());
  auto sub = bus.subscribe<Ping>("later", [](const Ping&) { throw std::runtime_error("x"); },
                                 {.retry = delayed(2, std::chrono::hours(1), std::chrono::hours(1))});
  bus.publish(Ping{});
  ASSERT_TRUE(bus.flush());
  const auto r = bus.drain(std::chrono::milliseconds(10));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.undelivered, 1u);
  EXPECT_EQ(env.failures.count(Report::Kind::drain_deadline), 1u);
}

}  // namespace
