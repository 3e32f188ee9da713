// The Bus object's own lifetime: destroyed from inside its handlers, used after a move.
#include <gtest/gtest.h>

#include <crier/sqlite.hpp>

#include <functional>
#include <latch>
#include <memory>

#include "durable_events.hpp"
#include "test_events.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {

// Counts down when the last copy of it goes: captured by a handler, it says that the bus
// freed the subscriber, so the bus itself is gone.
struct FreedSignal {
  explicit FreedSignal(std::latch& l) : latch(&l) {}
  FreedSignal(const FreedSignal&) = delete;
  FreedSignal& operator=(const FreedSignal&) = delete;
  ~FreedSignal() { latch->count_down(); }
  std::latch* latch;
};

struct Kind {
  std::string name;
  bool durable;
};
void PrintTo(const Kind& k, std::ostream* os) { *os << k.name; }

class BusLifetime : public ::testing::TestWithParam<Kind> {
 protected:
  std::unique_ptr<crier::Bus> make(crier::BusOptions o = {}) {
    if (!GetParam().durable) return std::make_unique<crier::Bus>(std::move(o));
    return std::make_unique<crier::Bus>(crier::sqlite::open(dir_.file("bus.db")), std::move(o));
  }
  ScratchDir dir_;
};

TEST_P(BusLifetime, AnAsyncHandlerMayDestroyTheBusAsItsLastAct) {
  for (int round = 0; round < 5; ++round) {
    std::latch freed(1);
    auto bus = make();
    auto signal = std::make_shared<FreedSignal>(freed);
    std::unique_ptr<crier::Bus>* owner = &bus;
    auto sub = bus->subscribe<Job>("destroyer", [owner, signal](const Job&) { owner->reset(); });
    signal.reset();
    bus->publish(Job{1, "last"});
    freed.wait();  // the subscriber, and so the bus, was freed after the handler returned
    EXPECT_EQ(bus, nullptr);
    EXPECT_FALSE(sub.active());
  }
}

TEST_P(BusLifetime, TheDestructorFromAHandlerStillDrainsWhatIsQueued) {
  std::latch freed(1);
  auto bus = make();
  auto signal = std::make_shared<FreedSignal>(freed);
  std::latch destroy_now(1);
  Counter others;
  std::unique_ptr<crier::Bus>* owner = &bus;
  auto other = bus->subscribe<Job>("other", [&others, signal](const Job&) { others.add(); });
  auto destroyer = bus->subscribe<Job>("destroyer", [owner, &destroy_now](const Job& j) {
    if (j.n == 0) {
      destroy_now.wait();
      owner->reset();
    }
  });
  signal.reset();
  for (int i = 0; i < 100; ++i) bus->publish(Job{i, ""});
  destroy_now.count_down();
  freed.wait();
  EXPECT_EQ(others.value(), 100);  // drained before the bus was freed
}

TEST_P(BusLifetime, ADelayedRetryHandlerMayDestroyTheBus) {
  auto clock = std::make_shared<crier::ManualClock>();
  crier::BusOptions o;
  o.clock = clock;
  std::latch freed(1);
  auto bus = make(o);
  auto signal = std::make_shared<FreedSignal>(freed);
  std::unique_ptr<crier::Bus>* owner = &bus;
  crier::SubscribeOptions so;
  so.retry.max_attempts = 3;
  so.retry.initial_delay = 1s;
  so.retry.jitter = false;
  auto sub = bus->subscribe<Job>(
      "retrier",
      [owner, signal](const Job&, crier::Delivery& d) {
        if (d.attempt() == 1) throw std::runtime_error("not yet");
        owner->reset();
      },
      so);
  signal.reset();
  bus->publish(Job{1, ""});
  ASSERT_TRUE(bus->flush(30s));  // handled once: the retry waits on the timer
  clock->advance(1s);
  freed.wait();
  EXPECT_EQ(bus, nullptr);
}

TEST(BusLifetimeInline, AnInlineHandlerMayDestroyTheBus) {
  std::latch freed(1);
  auto bus = std::make_unique<crier::Bus>();
  auto signal = std::make_shared<FreedSignal>(freed);
  std::unique_ptr<crier::Bus>* owner = &bus;
  int after = 0;
  auto first = bus->subscribe<Ping>(
      "first", [owner, signal](const Ping&) { owner->reset(); }, kInline);
  auto second = bus->subscribe<Ping>(
      "second", [&after](const Ping&) { ++after; }, kInline);
  signal.reset();
  bus->publish(Ping{1});  // returns although the bus went away inside it
  freed.wait();
  EXPECT_EQ(bus, nullptr);
  EXPECT_EQ(after, 1);  // the publish under way finished with the other subscriber
}

TEST(BusLifetimeInline, DrainAndFlushFromAnInlineHandlerSayTheyWouldWaitForThemselves) {
  crier::Bus bus;
  std::string drain_error, flush_error;
  auto sub = bus.subscribe<Ping>(
      "drainer",
      [&](const Ping&) {
        try {
          bus.drain(10s);
        } catch (const crier::Error& e) {
          drain_error = e.what();
        }
        try {
          bus.flush(10s);
        } catch (const crier::Error& e) {
          flush_error = e.what();
        }
      },
      kInline);
  bus.publish(Ping{1});
  EXPECT_NE(drain_error.find("would wait for itself"), std::string::npos) << drain_error;
  EXPECT_NE(flush_error.find("would wait for itself"), std::string::npos) << flush_error;
}

INSTANTIATE_TEST_SUITE_P(Transports, BusLifetime, ::testing::Values(Kind{"memory", false}, Kind{"sqlite", true}),
                         [](const auto& info) { return info.param.name; });

TEST(MovedFromBus, EveryCallSaysItWasMovedFrom) {
  crier::Bus from;
  crier::Bus to(std::move(from));
  auto expect_moved = [](const std::function<void()>& call, const char* what) {
    try {
      call();
      ADD_FAILURE() << what << " did not throw";
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::invalid_argument) << what;
      EXPECT_NE(std::string(e.what()).find("moved from"), std::string::npos) << what << ": " << e.what();
    }
  };
  // NOLINTBEGIN(bugprone-use-after-move): that is what is tested
  expect_moved([&] { from.publish(Ping{1}); }, "publish");
  expect_moved([&] { from.publish(Ping{1}, crier::Attributes{}); }, "publish with attributes");
  expect_moved([&] { from.publish_batch(std::vector<Ping>{Ping{1}}); }, "publish_batch");
  expect_moved([&] { (void)from.subscribe<Ping>("s", [](const Ping&) {}); }, "subscribe");
  expect_moved([&] { from.drain(); }, "drain");
  expect_moved([&] { from.flush(); }, "flush");
  expect_moved([&] { (void)from.metrics(); }, "metrics");
  expect_moved([&] { (void)from.dead_letters(); }, "dead_letters");
  expect_moved([&] { (void)from.dead_letter_count(); }, "dead_letter_count");
  expect_moved([&] { from.redrive(); }, "redrive");
  expect_moved([&] { from.purge(); }, "purge");
  expect_moved([&] { (void)from.source(); }, "source");
  // NOLINTEND(bugprone-use-after-move)
  // The bus it was moved to works, and the moved-from one can be assigned a new bus.
  Counter seen;
  auto sub = to.subscribe<Ping>("s", [&](const Ping&) { seen.add(); });
  to.publish(Ping{1});
  seen.wait_for(1);
  from = crier::Bus();
  EXPECT_NO_THROW(from.publish(Ping{2}));
}

}  // namespace
