// Kill -9 at random moments: every event whose publish returned is delivered to every
// subscriber at least once, across restarts. The child (crash/crash_child.cpp) publishes from
// four threads and consumes with four subscribers, one of them ordered by key; it is killed CRIER_CRASH_CYCLES times
// (default 50; scripts/crash-test runs 1,000), then restarted to drain, and its own logs are
// checked. The moment of each kill is random on purpose: it is the experiment, not a wait.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "child_process.hpp"
#include "durable_events.hpp"

using namespace test;

namespace {

std::vector<long long> read_numbers(const std::string& path) {
  std::vector<long long> out;
  std::ifstream in(path);
  long long n;
  while (in >> n) out.push_back(n);
  return out;
}

int cycles() {
  const char* env = std::getenv("CRIER_CRASH_CYCLES");
  return env ? std::max(1, std::atoi(env)) : 50;
}

// The key of a crash child's event: its publishing thread (the child's partition key).
long long key_of(long long n) { return n / 10'000'000 % 10; }

// Goes through a handler's log in handling order and counts the events handled while an
// acknowledged event published before them on their key (their publishing thread, whose
// numbers grow run after run) had not been handled yet. Redeliveries of events already
// handled are duplicates, not disorder.
std::size_t key_order_violations(const std::vector<long long>& acked, const std::vector<long long>& handled_log) {
  std::unordered_map<long long, std::vector<long long>> acked_by_key;
  for (long long v : acked) acked_by_key[key_of(v)].push_back(v);
  for (auto& [key, list] : acked_by_key) std::sort(list.begin(), list.end());
  std::unordered_map<long long, std::size_t> prefix;  // per key: acked events handled in a row from the first
  std::unordered_set<long long> handled;
  std::size_t violations = 0;
  for (long long v : handled_log) {
    const auto& list = acked_by_key[key_of(v)];
    std::size_t& done = prefix[key_of(v)];
    const auto before = static_cast<std::size_t>(std::lower_bound(list.begin(), list.end(), v) - list.begin());
    if (done < before) ++violations;
    handled.insert(v);
    while (done < list.size() && handled.count(list[done])) ++done;
  }
  return violations;
}

// Kills the child `n` times with the store at `durability`, drains, and checks the logs.
void kill_and_check(const char* durability, int n) {
  ScratchDir dir;
  const std::string db = dir.file("crash.db");
  const std::string logs = dir.file("");
  std::mt19937 rng(std::random_device{}());
  ::setenv("CRIER_CRASH_DURABILITY", durability, 1);  // the children inherit it
  int killed_starting = 0;
  for (int run = 1; run <= n; ++run) {
    Child c = spawn({CRIER_CRASH_CHILD, db, logs, "run", std::to_string(run)});
    // One kill in five lands while the child is still opening the store, subscribing and
    // recovering; the others while it publishes and consumes. The last lands only after a
    // publish returned, so that even a short run under a sanitizer has something to check.
    if (run == n) {
      wait_ready(c);
      (void)read_line(c);  // "acknowledged"
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 60000));
    } else if (rng() % 5 == 0) {
      ++killed_starting;
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    } else {
      wait_ready(c);
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 60000));
    }
    kill(c.pid, SIGKILL);
    const int status = reap(c);
    ASSERT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
        << "cycle " << run << ": the child failed on its own (exit " << WEXITSTATUS(status) << ")";
  }
  Child drain = spawn({CRIER_CRASH_CHILD, db, logs, "drain"});
  const int status = reap(drain);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the draining child failed: " << status;

  const auto acked = read_numbers(dir.file("acked.log"));
  const auto attempted_list = read_numbers(dir.file("attempted.log"));
  const std::unordered_set<long long> attempted(attempted_list.begin(), attempted_list.end());
  ASSERT_GT(acked.size(), 0u);
  std::size_t lost_total = 0, duplicates_total = 0;
  for (const char* sub : {"alpha", "beta", "gamma", "delta"}) {
    std::unordered_map<long long, int> handled;
    for (long long v : read_numbers(dir.file(std::string("handled-") + sub + ".log"))) ++handled[v];
    std::size_t lost = 0, duplicates = 0, invented = 0;
    for (long long v : acked)
      if (handled.find(v) == handled.end()) ++lost;
    for (const auto& [v, times] : handled) {
      if (!attempted.count(v)) ++invented;
      duplicates += static_cast<std::size_t>(times - 1);
    }
    EXPECT_EQ(lost, 0u) << sub << ": acknowledged events never delivered";
    EXPECT_EQ(invented, 0u) << sub << ": delivered events that were never published";
    lost_total += lost;
    duplicates_total += duplicates;
    std::printf("[ figures  ] %s: %zu handled, %zu duplicates\n", sub, handled.size(), duplicates);
  }
  const std::size_t out_of_order = key_order_violations(acked, read_numbers(dir.file("handled-delta.log")));
  EXPECT_EQ(out_of_order, 0u) << "delta: events handled before an earlier acknowledged event of their key";
  std::printf(
      "[ figures  ] %s: %d kill cycles (%d while starting): %zu acknowledged publishes, %zu lost, "
      "%zu duplicate deliveries\n",
      durability, n, killed_starting, acked.size(), lost_total, duplicates_total);
}

}  // namespace

TEST(CrashTest, KilledAtRandomMomentsNothingAcknowledgedIsLost) { kill_and_check("normal", cycles()); }

// Durability::full journals with pwrite and a bitmap rather than through the mapping: a second,
// shorter run for that path.
TEST(CrashTest, KilledAtRandomMomentsAtFullDurabilityNothingAcknowledgedIsLost) {
  kill_and_check("full", std::max(1, cycles() / 5));
}
