// A consumer process SIGKILLed with events in hand: another process of the same subscriber
// name handles every one of them once the server's AckWait for them has run out (and not
// before: the dead process renewed it while it held them).
#include <gtest/gtest.h>

#include <crier/nats.hpp>

#include <chrono>

#include "nats_server.hpp"
#include "takeover.hpp"

using namespace test;
using namespace std::chrono_literals;

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
      spawn({CRIER_CONSUMER_CHILD, "nats", server.url(), o.stream, o.subject_prefix, std::to_string(kAckWait.count())});
  const Takeover t = take_over_from_killed(child, *transport, bus, kEvents, 10 * kAckWait);
  std::printf("first event handled %lld ms after the kill (AckWait %lld ms); %d handler calls for %d events\n",
              static_cast<long long>(t.first_after.count()), static_cast<long long>(kAckWait.count()), t.calls,
              kEvents);
  // The dead process renewed its events' AckWait at most a quarter of it before it died:
  // the server hands them out again no sooner than three quarters of AckWait after the kill.
  EXPECT_GE(t.first_after, kAckWait / 2);
  EXPECT_EQ(t.calls, kEvents) << "each event handled once by the second process";
}
