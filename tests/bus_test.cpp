// The in-process bus's semantics, one behaviour per test.
#include <gtest/gtest.h>

#include <latch>
#include <memory>
#include <set>
#include <thread>

#include "test_events.hpp"

using namespace test;
using crier::Bus;
using crier::DeliveryMode;
using crier::Errc;

namespace {

template <class F>
Errc error_code_of(F&& f) {
  try {
    f();
  } catch (const crier::Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no crier::Error thrown";
  return Errc::invalid_argument;
}

// A bus with one worker whose drain-deadline report counts `release` down: a handler held on
// it returns only once drain has given up waiting.
crier::BusOptions one_worker_released_at_drain_deadline(std::latch& release) {
  crier::BusOptions o;
  o.worker_threads = 1;
  o.on_error = [&release](const crier::Report& r) {
    if (r.kind == crier::Report::Kind::drain_deadline) release.count_down();
  };
  return o;
}

TEST(Error, WhatSaysTheCodeAndMessageIsTheTextAlone) {
  const crier::Error e(crier::Errc::codec_error, "JSON decoding failed: at byte 3");
  EXPECT_STREQ(e.what(), "crier: codec_error: JSON decoding failed: at byte 3");
  EXPECT_EQ(e.message(), "JSON decoding failed: at byte 3");
}

TEST(Bus, InlineSubscriberRunsOnThePublishersThread) {
  Bus bus;
  std::thread::id seen;
  int sum = 0;
  auto sub = bus.subscribe<Ping>(
      "inline",
      [&](const Ping& p) {
        sum += p.n;
        seen = std::this_thread::get_id();
      },
      kInline);
  bus.publish(Ping{2});
  bus.publish(Ping{5});
  EXPECT_EQ(sum, 7);
  EXPECT_EQ(seen, std::this_thread::get_id());
}

TEST(Bus, AsyncSubscriberRunsOnAWorker) {
  Bus bus;
  std::latch done(3);
  std::atomic<int> sum{0};
  std::atomic<bool> on_publisher_thread{false};
  const auto me = std::this_thread::get_id();
  auto sub = bus.subscribe<Ping>("async", [&](const Ping& p) {
    sum += p.n;
    if (std::this_thread::get_id() == me) on_publisher_thread = true;
    done.count_down();
  });
  for (int i = 1; i <= 3; ++i) bus.publish(Ping{i});
  done.wait();
  EXPECT_EQ(sum, 6);
  EXPECT_FALSE(on_publisher_thread);
}

TEST(Bus, EveryTypeReachesOnlyItsSubscribers) {
  Bus bus;
  int pings = 0, pongs = 0;
  auto a = bus.subscribe<Ping>(
      "p", [&](const Ping&) { ++pings; }, kInline);
  auto b = bus.subscribe<Pong>(
      "p", [&](const Pong&) { ++pongs; }, kInline);  // same name, other type: fine
  bus.publish(Ping{});
  bus.publish(Ping{});
  bus.publish(Pong{});
  EXPECT_EQ(pings, 2);
  EXPECT_EQ(pongs, 1);
}

TEST(Bus, PublishWithoutSubscribersDoesNothing) {
  Bus bus;
  EXPECT_NO_THROW(bus.publish(Ping{1}));
}

TEST(Bus, ThrowingHandlerIsIsolatedCountedAndReported) {
  Failures failures;
  Bus bus(failures.options());
  int before = 0, after = 0;
  auto s1 = bus.subscribe<Ping>(
      "before", [&](const Ping&) { ++before; }, kInline);
  auto s2 = bus.subscribe<Ping>(
      "thrower", [](const Ping& p) { throw std::runtime_error("boom " + std::to_string(p.n)); }, kInline);
  auto s3 = bus.subscribe<Ping>(
      "after", [&](const Ping&) { ++after; }, kInline);
  EXPECT_NO_THROW(bus.publish(Ping{1}));
  EXPECT_NO_THROW(bus.publish(Ping{2}));
  EXPECT_EQ(before, 2);
  EXPECT_EQ(after, 2);
  EXPECT_EQ(stats_of(bus, "thrower").failed, 2u);
  EXPECT_EQ(stats_of(bus, "after").failed, 0u);
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures.messages[0], "boom 1");
  EXPECT_EQ(failures.subscribers[1], "thrower");
}

TEST(Bus, AsyncThrowingHandlerDoesNotStopItsQueue) {
  Failures failures;
  Bus bus(failures.options());
  std::latch done(10);
  auto sub = bus.subscribe<Ping>("flaky", [&](const Ping& p) {
    done.count_down();
    if (p.n % 2) throw std::runtime_error("odd");
  });
  for (int i = 0; i < 10; ++i) bus.publish(Ping{i});
  done.wait();
  bus.drain();
  const auto st = stats_of(bus, "flaky");
  EXPECT_EQ(st.failed, 5u);
  EXPECT_EQ(st.delivered, 5u);
  EXPECT_EQ(failures.size(), 5u);
}

TEST(Bus, NonStandardExceptionIsReportedNotFatal) {
  Failures failures;
  Bus bus(failures.options());
  auto sub = bus.subscribe<Ping>(
      "weird", [](const Ping&) { throw 42; }, kInline);
  EXPECT_NO_THROW(bus.publish(Ping{}));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures.messages[0].find("not derived from std::exception"), std::string::npos);
}

TEST(Bus, ThrowingErrorHookIsSwallowed) {
  crier::BusOptions o;
  o.on_error = [](const crier::Report&) { throw std::runtime_error("hook"); };
  Bus bus(o);
  auto sub = bus.subscribe<Ping>(
      "x", [](const Ping&) { throw std::runtime_error("h"); }, kInline);
  EXPECT_NO_THROW(bus.publish(Ping{}));
  EXPECT_EQ(stats_of(bus, "x").failed, 1u);
}

TEST(Bus, InvalidSubscriberNamesAreRejected) {
  Bus bus;
  for (const char* bad : {"", "has.dot", "has space", "-lead", "ü"}) {
    try {
      auto s = bus.subscribe<Ping>(bad, [](const Ping&) {});
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_name);
      EXPECT_NE(std::string(e.what()).find("com.example.test.ping"), std::string::npos) << e.what();
    }
  }
}

TEST(Bus, AnOverLongNameIsCutInTheError) {
  Bus bus;
  const std::string name(300, 'n');
  try {
    auto s = bus.subscribe<Ping>(name, [](const Ping&) {});
    ADD_FAILURE() << "accepted a 300-character name";
  } catch (const crier::Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find(name), std::string::npos) << "the whole name is echoed: " << m;
    EXPECT_NE(m.find("(300 characters)"), std::string::npos) << m;
    EXPECT_LT(m.size(), 250u) << m;
  }
}

TEST(Bus, DuplicateSubscriberForOneTypeIsRejected) {
  Bus bus;
  auto a = bus.subscribe<Ping>("dup", [](const Ping&) {});
  EXPECT_EQ(error_code_of([&] { auto b = bus.subscribe<Ping>("dup", [](const Ping&) {}); }), Errc::invalid_argument);
  a.unsubscribe();
  EXPECT_NO_THROW(auto c = bus.subscribe<Ping>("dup", [](const Ping&) {}));
}

TEST(Bus, BadOptionsAreRejected) {
  Bus bus;
  EXPECT_EQ(error_code_of([&] { auto s = bus.subscribe<Ping>("c", [](const Ping&) {}, {.concurrency = 0}); }),
            Errc::invalid_argument);
  EXPECT_EQ(error_code_of([&] { auto s = bus.subscribe<Ping>("q", [](const Ping&) {}, {.queue_capacity = 0}); }),
            Errc::invalid_argument);
  EXPECT_EQ(error_code_of([&] {
              auto s = bus.subscribe<Ping>("i", [](const Ping&) {}, {.mode = DeliveryMode::sync, .concurrency = 2});
            }),
            Errc::invalid_argument);
  crier::SubscribeOptions more_immediate_than_all;
  more_immediate_than_all.retry.max_attempts = 2;
  more_immediate_than_all.retry.immediate_attempts = 3;
  try {
    auto s = bus.subscribe<Ping>(
        "r", [](const Ping&) {}, more_immediate_than_all);
    ADD_FAILURE() << "immediate_attempts > max_attempts accepted";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("retry.immediate_attempts (3) must not exceed retry.max_attempts (2)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Bus, InvalidExtensionNameIsRejectedBeforeDelivery) {
  Bus bus;
  int calls = 0;
  auto sub = bus.subscribe<Ping>(
      "x", [&](const Ping&) { ++calls; }, kInline);
  crier::Attributes a;
  a.extensions = {{"Bad-Name", "v"}};
  EXPECT_EQ(error_code_of([&] { bus.publish(Ping{}, a); }), Errc::invalid_name);
  a.extensions = {{"id", "v"}};  // a core attribute
  EXPECT_EQ(error_code_of([&] { bus.publish(Ping{}, a); }), Errc::invalid_name);
  EXPECT_EQ(calls, 0);
}

// On every bus, not only where a transport writes JSON: the program that works in memory
// works unchanged on NATS in structured mode.
TEST(Bus, AttributesOrASourceThatAreNotUtf8AreRefusedBeforeDelivery) {
  Bus bus;
  int calls = 0;
  auto sub = bus.subscribe<Ping>(
      "x", [&](const Ping&) { ++calls; }, kInline);
  crier::Attributes a;
  a.subject = "order-\xff";
  EXPECT_EQ(error_code_of([&] { bus.publish(Ping{}, a); }), Errc::invalid_argument);
  a = {};
  a.extensions = {{"region", "M\xfcller"}};
  EXPECT_EQ(error_code_of([&] { bus.publish(Ping{}, a); }), Errc::invalid_argument);
  EXPECT_EQ(calls, 0);
  a.extensions = {{"region", "M\xc3\xbcller"}};
  bus.publish(Ping{}, a);
  EXPECT_EQ(calls, 1);
  try {
    Bus latin1(crier::BusOptions{.source = "/shop/M\xfcller"});
    ADD_FAILURE() << "a source that is not UTF-8 was accepted";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("BusOptions::source is not UTF-8 (byte 0xFC at offset 7)"), std::string::npos)
        << e.what();
  }
}

TEST(Bus, PublishAndSubscribeAfterDrainFail) {
  Bus bus;
  auto sub = bus.subscribe<Ping>("x", [](const Ping&) {});
  EXPECT_TRUE(bus.drain().complete);
  EXPECT_EQ(error_code_of([&] { bus.publish(Ping{}); }), Errc::bus_closed);
  EXPECT_EQ(error_code_of([&] { auto s = bus.subscribe<Ping>("y", [](const Ping&) {}); }), Errc::bus_closed);
  EXPECT_TRUE(bus.drain().complete);  // idempotent
}

TEST(Bus, DrainHandlesEverythingQueued) {
  Bus bus(crier::BusOptions{.worker_threads = 1});
  std::atomic<int> handled{0};
  auto sub = bus.subscribe<Ping>("slowish", [&](const Ping&) { handled.fetch_add(1); });
  for (int i = 0; i < 5000; ++i) bus.publish(Ping{i});
  const auto r = bus.drain(std::chrono::seconds(60));
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.undelivered, 0u);
  EXPECT_EQ(handled.load(), 5000);
}

TEST(Bus, DrainLetsCascadesFromHandlersThrough) {
  Bus bus;
  std::atomic<int> pongs{0};
  auto a = bus.subscribe<Ping>("relay", [&](const Ping& p, crier::Delivery& d) { d.publish(Pong{p.n}); });
  auto b = bus.subscribe<Pong>("sink", [&](const Pong&) { pongs.fetch_add(1); });
  for (int i = 0; i < 1000; ++i) bus.publish(Ping{i});
  EXPECT_TRUE(bus.drain(std::chrono::seconds(60)).complete);
  EXPECT_EQ(pongs.load(), 1000);
}

TEST(Bus, DrainPastItsDeadlineSaysHowManyWereLeft) {
  std::latch release(1);
  Bus bus(one_worker_released_at_drain_deadline(release));
  std::latch first_started(1);
  std::atomic<int> handled{0};
  auto sub = bus.subscribe<Ping>("stuck", [&](const Ping& p) {
    if (p.n == 0) {
      first_started.count_down();
      release.wait();  // held until drain's deadline passes
    }
    handled.fetch_add(1);
  });
  bus.publish(Ping{0});
  first_started.wait();
  for (int i = 1; i < 10; ++i) bus.publish(Ping{i});
  const auto r = bus.drain(std::chrono::milliseconds(1));
  EXPECT_FALSE(r.complete);
  EXPECT_GT(r.undelivered, 0u);
  EXPECT_EQ(r.undelivered + static_cast<std::size_t>(handled.load()), 10u);  // nothing vanished
}

TEST(Bus, DrainStopsBetweenEventsOnceItsDeadlinePassed) {
  // The handler is held inside the first event of a full batch until the deadline passed:
  // drain then waits for that one call only, and counts every other event as left.
  constexpr int kEvents = 1000;
  std::latch release(1);
  Bus bus(one_worker_released_at_drain_deadline(release));
  std::latch published(1);
  std::atomic<int> handled{0};
  // The only worker waits in `gate` until every Ping is queued, so the Pings' run takes a
  // whole batch at once.
  auto gate = bus.subscribe<Pong>("gate", [&](const Pong&) { published.wait(); });
  auto sub = bus.subscribe<Ping>("stuck", [&](const Ping& p) {
    if (p.n == 0) release.wait();
    handled.fetch_add(1);
  });
  bus.publish(Pong{0});
  for (int i = 0; i < kEvents; ++i) bus.publish(Ping{i});
  published.count_down();
  const auto r = bus.drain(std::chrono::milliseconds(50));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(handled.load(), 1);  // not the rest of its batch of 256
  EXPECT_EQ(r.undelivered, static_cast<std::size_t>(kEvents - 1));
}

TEST(Bus, DestructorDrainsBeforeSubscriptionsGo) {
  std::atomic<int> handled{0};
  crier::Subscription keep;
  {
    Bus bus(crier::BusOptions{.worker_threads = 1});
    keep = bus.subscribe<Ping>("x", [&](const Ping&) { handled.fetch_add(1); });
    for (int i = 0; i < 2000; ++i) bus.publish(Ping{i});
  }
  EXPECT_EQ(handled.load(), 2000);
  EXPECT_FALSE(keep.active());
  EXPECT_EQ(keep.unsubscribe(), 0u);  // outliving the bus is harmless
}

TEST(Bus, DrainFromAWorkerHandlerIsRefused) {
  Bus bus;
  std::latch done(1);
  std::atomic<bool> refused{false};
  auto sub = bus.subscribe<Ping>("x", [&](const Ping&) {
    try {
      bus.drain();
    } catch (const crier::Error& e) {
      refused = e.code() == Errc::would_deadlock;
    }
    done.count_down();
  });
  bus.publish(Ping{});
  done.wait();
  EXPECT_TRUE(refused);
}

TEST(Bus, UnsubscribeStopsDelivery) {
  Bus bus;
  int calls = 0;
  auto sub = bus.subscribe<Ping>(
      "x", [&](const Ping&) { ++calls; }, kInline);
  bus.publish(Ping{});
  EXPECT_TRUE(sub.active());
  sub.unsubscribe();
  EXPECT_FALSE(sub.active());
  bus.publish(Ping{});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(sub.unsubscribe(), 0u);  // idempotent
}

TEST(Bus, SubscriptionDestructorUnsubscribes) {
  Bus bus;
  int calls = 0;
  {
    auto sub = bus.subscribe<Ping>(
        "x", [&](const Ping&) { ++calls; }, kInline);
    bus.publish(Ping{});
  }
  bus.publish(Ping{});
  EXPECT_EQ(calls, 1);
}

TEST(Bus, UnsubscribeMidBatchLeavesEveryEventHandledOrCounted) {
  constexpr int kEvents = 500;
  for (int round = 0; round < 20; ++round) {
    Bus bus;
    std::atomic<int> handled{0};
    std::latch second_started(1), unsubscribing(1);
    crier::Subscription sub = bus.subscribe<Ping>("slow", [&](const Ping& p) {
      if (p.n == 1) {
        second_started.count_down();
        unsubscribing.wait();  // the batch is under way when unsubscribe begins
      }
      handled.fetch_add(1);
    });
    for (int i = 0; i < kEvents; ++i) bus.publish(Ping{i});
    second_started.wait();
    std::size_t discarded = 0;
    std::thread t([&] {
      unsubscribing.count_down();
      discarded = sub.unsubscribe();
    });
    t.join();
    EXPECT_EQ(static_cast<std::size_t>(handled.load()) + discarded, static_cast<std::size_t>(kEvents))
        << "handled " << handled.load() << ", discarded " << discarded;
  }
}

TEST(Bus, SubscriptionMovesKeepOneRegistration) {
  Bus bus;
  int calls = 0;
  crier::Subscription outer;
  {
    auto sub = bus.subscribe<Ping>(
        "x", [&](const Ping&) { ++calls; }, kInline);
    outer = std::move(sub);
    EXPECT_FALSE(sub.active());
  }
  bus.publish(Ping{});
  EXPECT_EQ(calls, 1);
  crier::Subscription other = std::move(outer);
  bus.publish(Ping{});
  EXPECT_EQ(calls, 2);
  other = crier::Subscription();
  bus.publish(Ping{});
  EXPECT_EQ(calls, 2);
}

TEST(Bus, UnsubscribeReportsDiscardedQueuedEvents) {
  Bus bus(crier::BusOptions{.worker_threads = 1});
  std::latch started(1), release(1);
  auto blocker = bus.subscribe<Pong>("blocker", [&](const Pong&) {
    started.count_down();
    release.wait();
  });
  bus.publish(Pong{});
  started.wait();  // the only worker is busy: Ping events wait in their queue
  std::atomic<int> calls{0};
  auto sub = bus.subscribe<Ping>("x", [&](const Ping&) { calls.fetch_add(1); });
  for (int i = 0; i < 7; ++i) bus.publish(Ping{i});
  EXPECT_EQ(sub.unsubscribe(), 7u);
  release.count_down();
  bus.drain();
  EXPECT_EQ(calls.load(), 0);
}

// --- re-entrancy -------------------------------------------------------------------------

TEST(Reentrancy, InlineHandlerPublishesAnotherEvent) {
  Bus bus;
  std::vector<std::string> order;
  auto a = bus.subscribe<Ping>(
      "a",
      [&](const Ping& p) {
        order.push_back("ping" + std::to_string(p.n));
        bus.publish(Pong{p.n});
      },
      kInline);
  auto b = bus.subscribe<Pong>(
      "b", [&](const Pong& p) { order.push_back("pong" + std::to_string(p.n)); }, kInline);
  bus.publish(Ping{1});
  EXPECT_EQ(order, (std::vector<std::string>{"ping1", "pong1"}));
}

TEST(Reentrancy, InlineHandlerPublishesItsOwnTypeRecursively) {
  Bus bus;
  int calls = 0;
  auto a = bus.subscribe<Ping>(
      "a",
      [&](const Ping& p) {
        ++calls;
        if (p.n > 0) bus.publish(Ping{p.n - 1});
      },
      kInline);
  bus.publish(Ping{10});
  EXPECT_EQ(calls, 11);
}

TEST(Reentrancy, UnboundedRecursionFailsCleanly) {
  Failures failures;
  Bus bus(failures.options());
  int calls = 0;
  auto a = bus.subscribe<Ping>(
      "loop",
      [&](const Ping& p) {
        ++calls;
        bus.publish(Ping{p.n + 1});
      },
      kInline);
  EXPECT_NO_THROW(bus.publish(Ping{0}));
  EXPECT_EQ(calls, crier::detail::kMaxDispatchDepth);
  ASSERT_GE(failures.size(), 1u);
  EXPECT_NE(failures.messages[0].find("nested"), std::string::npos) << failures.messages[0];
}

TEST(Reentrancy, AsyncHandlerPublishes) {
  Bus bus;
  std::latch done(100);
  auto a = bus.subscribe<Ping>("a", [&](const Ping& p) { bus.publish(Pong{p.n}); });
  auto b = bus.subscribe<Pong>("b", [&](const Pong&) { done.count_down(); });
  for (int i = 0; i < 100; ++i) bus.publish(Ping{i});
  done.wait();
}

TEST(Reentrancy, SubscriberAddedDuringDispatchIsNotCalledByIt) {
  Bus bus;
  int late_calls = 0;
  crier::Subscription late;
  auto first = bus.subscribe<Ping>(
      "first",
      [&](const Ping&) {
        if (!late.active())
          late = bus.subscribe<Ping>(
              "late", [&](const Ping&) { ++late_calls; }, kInline);
      },
      kInline);
  bus.publish(Ping{});
  EXPECT_EQ(late_calls, 0);
  bus.publish(Ping{});
  EXPECT_EQ(late_calls, 1);
}

TEST(Reentrancy, HandlerUnsubscribesItselfInline) {
  Bus bus;
  int calls = 0;
  crier::Subscription self;
  self = bus.subscribe<Ping>(
      "once",
      [&](const Ping&) {
        ++calls;
        self.unsubscribe();  // must not wait for itself
      },
      kInline);
  bus.publish(Ping{});
  bus.publish(Ping{});
  EXPECT_EQ(calls, 1);
}

TEST(Reentrancy, HandlerUnsubscribesItselfAsync) {
  Bus bus;
  std::atomic<int> calls{0};
  std::latch done(1);
  crier::Subscription self;
  std::mutex mu;
  std::unique_lock hold(mu);  // the handler must not touch `self` before it is assigned
  self = bus.subscribe<Ping>("once", [&](const Ping&) {
    std::lock_guard l(mu);
    if (calls.fetch_add(1) == 0) {
      self.unsubscribe();
      done.count_down();
    }
  });
  for (int i = 0; i < 50; ++i) bus.publish(Ping{i});
  hold.unlock();
  done.wait();
  bus.drain();
  EXPECT_EQ(calls.load(), 1);
}

TEST(Reentrancy, HandlerUnsubscribesALaterSubscriberOfTheSameDispatch) {
  Bus bus;
  int second_calls = 0;
  crier::Subscription second;
  auto first = bus.subscribe<Ping>(
      "first", [&](const Ping&) { second.unsubscribe(); }, kInline);
  second = bus.subscribe<Ping>(
      "second", [&](const Ping&) { ++second_calls; }, kInline);
  bus.publish(Ping{});
  EXPECT_EQ(second_calls, 0);  // unsubscribe returned before its turn came: never called
}

TEST(Reentrancy, AsyncQueueFullOfItselfFailsInsteadOfDeadlocking) {
  Failures failures;
  Bus bus(failures.options());
  std::latch done(1);
  auto sub = bus.subscribe<Ping>("self-feeder",
                                 [&](const Ping& p) {
                                   if (p.n == 0) {
                                     struct Done {
                                       std::latch& l;
                                       ~Done() { l.count_down(); }
                                     } signal{done};
                                     for (int i = 1; i <= 4; ++i) bus.publish(Ping{i});
                                   }
                                 },
                                 {.queue_capacity = 2});
  bus.publish(Ping{0});
  done.wait();
  bus.drain();
  ASSERT_GE(failures.size(), 1u);
  EXPECT_NE(failures.messages[0].find("would deadlock"), std::string::npos) << failures.messages[0];
}

// --- delivery context --------------------------------------------------------------------

TEST(Delivery, CarriesIdsTimeAndAttributes) {
  Bus bus(crier::BusOptions{.source = "/test/bus"});
  crier::Uuid root_id, child_corr, child_cause, child_id;
  std::string subject, key, source, type;
  int attempt = 0;
  const auto before = std::chrono::system_clock::now();
  crier::Timestamp when;
  auto a = bus.subscribe<Ping>(
      "a",
      [&](const Ping&, crier::Delivery& d) {
        root_id = d.id();
        subject = std::string(d.subject());
        key = std::string(d.partition_key());
        source = d.source();
        type = std::string(d.type());
        attempt = d.attempt();
        when = d.time();
        EXPECT_EQ(d.correlation_id(), d.id());
        EXPECT_TRUE(d.causation_id().is_nil());
        d.publish(Pong{1});
      },
      kInline);
  auto b = bus.subscribe<Pong>(
      "b",
      [&](const Pong&, crier::Delivery& d) {
        child_id = d.id();
        child_corr = d.correlation_id();
        child_cause = d.causation_id();
      },
      kInline);
  crier::Attributes attrs;
  attrs.subject = "order-7";
  attrs.partition_key = "customer-3";
  bus.publish(Ping{}, attrs);
  EXPECT_EQ(subject, "order-7");
  EXPECT_EQ(key, "customer-3");
  EXPECT_EQ(source, "/test/bus");
  EXPECT_EQ(type, "com.example.test.ping");
  EXPECT_EQ(attempt, 1);
  EXPECT_GE(when, before - std::chrono::milliseconds(1));
  EXPECT_EQ(child_corr, root_id);
  EXPECT_EQ(child_cause, root_id);
  EXPECT_NE(child_id, root_id);
  EXPECT_GT(child_id, root_id);  // time-ordered
}

TEST(Delivery, AllSubscribersSeeOneIdPerEvent) {
  Bus bus;
  std::vector<crier::Uuid> a_ids, b_ids;
  auto a = bus.subscribe<Ping>(
      "a", [&](const Ping&, crier::Delivery& d) { a_ids.push_back(d.id()); }, kInline);
  auto b = bus.subscribe<Ping>(
      "b", [&](const Ping&, crier::Delivery& d) { b_ids.push_back(d.id()); }, kInline);
  for (int i = 0; i < 100; ++i) bus.publish(Ping{i});
  EXPECT_EQ(a_ids, b_ids);
  EXPECT_EQ(std::set<crier::Uuid>(a_ids.begin(), a_ids.end()).size(), 100u);
}

TEST(Delivery, AsyncHandlerSeesTheSameContext) {
  Bus bus;
  std::latch done(1);
  std::string subject;
  crier::Uuid id;
  auto a = bus.subscribe<Ping>("a", [&](const Ping&, crier::Delivery& d) {
    subject = std::string(d.subject());
    id = d.id();
    done.count_down();
  });
  crier::Attributes attrs;
  attrs.subject = "s-1";
  bus.publish(Ping{}, attrs);
  done.wait();
  EXPECT_EQ(subject, "s-1");
  EXPECT_FALSE(id.is_nil());
}

TEST(Delivery, EnvelopeIsBuiltOnDemand) {
  Bus bus(crier::BusOptions{.source = "/shop"});
  crier::Envelope env;
  auto a = bus.subscribe<Order>(
      "a", [&](const Order&, crier::Delivery& d) { env = d.envelope(); }, kInline);
  crier::Attributes attrs;
  attrs.subject = "o-1";
  attrs.extensions = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
  bus.publish(Order{"o-1", 3}, attrs);
  EXPECT_EQ(env.type, "com.example.test.order");
  EXPECT_EQ(env.source, "/shop");
  EXPECT_EQ(env.subject, "o-1");
  EXPECT_EQ(env.datacontenttype, "application/json");
  EXPECT_EQ(nlohmann::json::parse(env.data), (nlohmann::json{{"id", "o-1"}, {"quantity", 3}}));
  EXPECT_EQ(env.extensions.at("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(env.extensions.at("correlationid"), env.id);
  EXPECT_NO_THROW(env.validate());
}

TEST(Delivery, EnvelopeWithoutCodecIsAClearError) {
  Bus bus;
  std::string message;
  auto a = bus.subscribe<Ping>(
      "a",
      [&](const Ping&, crier::Delivery& d) {
        try {
          (void)d.envelope();
        } catch (const crier::Error& e) {
          message = e.what();
        }
      },
      kInline);
  bus.publish(Ping{});
  EXPECT_NE(message.find("no codec"), std::string::npos) << message;
}

}  // namespace
