// A consumer process SIGKILLed with events in hand, and this process, under the same
// subscriber name, taking them over once the server gives up on the dead one (NATS: AckWait;
// Redis: the visibility timeout). Shared by the NATS and Redis tests.
#pragma once

#include <gtest/gtest.h>

#include <signal.h>

#include <crier/crier.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "child_process.hpp"
#include "durable_events.hpp"

namespace test {

/// What the taking over looked like.
struct Takeover {
  std::chrono::milliseconds first_after{0};  ///< from the kill to the first event handled here
  int calls = 0;                             ///< handler calls here, for all the events
};

/// Once `child` says it holds every one of `events` Jobs (its first line "holding <n>", and
/// `transport`'s inspector agreeing), SIGKILLs it, subscribes "billing" on `bus`, and waits up
/// to `patience` for each Job to be handled here. Fails the test where it falls short.
inline Takeover take_over_from_killed(Child& child, crier::Transport& transport, crier::Bus& bus, int events,
                                      std::chrono::milliseconds patience) {
  using Clock = std::chrono::steady_clock;
  Takeover out;
  const std::string first = read_line(child);
  if (first.rfind("holding ", 0) != 0) {
    ADD_FAILURE() << "the child process said '" << first << "'";
    ::kill(child.pid, SIGKILL);
    (void)reap(child);
    return out;
  }
  const auto in_hand = transport.inspector().subscribers();
  EXPECT_EQ(in_hand.size(), 1u);
  if (!in_hand.empty()) {
    EXPECT_EQ(in_hand.front().in_flight, static_cast<std::uint64_t>(events)) << "events the child holds";
  }
  ::kill(child.pid, SIGKILL);
  const auto killed = Clock::now();
  (void)reap(child);

  std::mutex mu;
  std::condition_variable cv;
  std::map<int, Clock::time_point> handled;  // first handling of each n
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) {
    std::lock_guard lock(mu);
    handled.emplace(j.n, Clock::now());
    ++out.calls;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  if (!cv.wait_for(lock, patience, [&] { return static_cast<int>(handled.size()) == events; }))
    ADD_FAILURE() << handled.size() << " of " << events << " handled after the kill";
  auto earliest = Clock::time_point::max();
  for (const auto& [n, at] : handled) earliest = std::min(earliest, at);
  if (!handled.empty()) out.first_after = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - killed);
  lock.unlock();
  sub.unsubscribe();
  return out;
}

}  // namespace test
