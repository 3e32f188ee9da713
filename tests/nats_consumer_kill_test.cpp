// A consumer process SIGKILLed with events in hand: another process of the same subscriber
// name handles every one of them once the server's AckWait for them has run out (and not
// before: the dead process renewed it while it held them).
#include <gtest/gtest.h>

#include <signal.h>

#include <crier/nats.hpp>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "child_process.hpp"
#include "durable_events.hpp"
#include "nats_server.hpp"

using namespace test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(NatsConsumerProcess, EventsInTheHandsOfAKilledProcessGoToAnotherOfTheSameNameAfterAckWait) {
  constexpr int kEvents = 50;
  constexpr auto kAckWait = 2000ms;
  NatsServer server;
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "KILLED";
  o.subject_prefix = "killed";
  o.ack_wait = kAckWait;
  const auto transport = crier::nats::connect(o);
  crier::Bus bus{transport};
  std::vector<Job> jobs;
  for (int i = 0; i < kEvents; ++i) jobs.push_back({i, "job"});
  bus.publish_batch(jobs);

  Child child =
      spawn({CRIER_NATS_CONSUMER_CHILD, server.url(), o.stream, o.subject_prefix, std::to_string(kAckWait.count())});
  const std::string first = read_line(child);  // "holding <n>": it has fetched every event
  ASSERT_EQ(first.rfind("holding ", 0), 0u) << "the child process said '" << first << "'";
  const auto in_hand = transport->inspector().subscribers();
  ASSERT_EQ(in_hand.size(), 1u);
  EXPECT_EQ(in_hand.front().in_flight, static_cast<std::uint64_t>(kEvents)) << "events the child holds";
  ::kill(child.pid, SIGKILL);
  const auto killed = Clock::now();
  (void)reap(child);

  std::mutex mu;
  std::condition_variable cv;
  std::map<int, Clock::time_point> handled;  // first handling of each n
  int calls = 0;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) {
    std::lock_guard lock(mu);
    handled.emplace(j.n, Clock::now());
    ++calls;
    cv.notify_all();
  });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10 * kAckWait, [&] { return handled.size() == kEvents; }))
        << handled.size() << " of " << kEvents << " handled after the kill";
  }
  auto earliest = Clock::time_point::max();
  for (const auto& [n, at] : handled) earliest = std::min(earliest, at);
  const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - killed);
  std::printf("first event handled %lld ms after the kill (AckWait %lld ms); %d handler calls for %d events\n",
              static_cast<long long>(after.count()), static_cast<long long>(kAckWait.count()), calls, kEvents);
  // The dead process renewed its events' AckWait at most a quarter of it before it died:
  // the server hands them out again no sooner than three quarters of AckWait after the kill.
  EXPECT_GE(after, kAckWait / 2);
  EXPECT_EQ(calls, kEvents) << "each event handled once by the second process";
}
