// A store write that fails (a full disk for one moment) at every point of a run: whatever the
// failed commit rolled back (new events, claims, finished claims, retry rows, cursors) is tried
// again, so nothing acknowledged is lost, the drain completes, and after a restart nothing
// finished is delivered again.
#include <gtest/gtest.h>

#include <crier/sqlite.hpp>

#include <algorithm>
#include <mutex>
#include <set>

#include "durable_events.hpp"
#include "faulty_disk.hpp"
#include "store_files.hpp"
#include "test_events.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {

constexpr int kEventsPerRun = 300;

// The distinct Jobs each subscriber finished.
struct Finished {
  std::mutex mu;
  std::condition_variable cv;
  std::set<int> reader, flaky;
  void add(std::set<int>& s, int n) {
    {
      std::lock_guard lock(mu);
      s.insert(n);
    }
    cv.notify_all();
  }
  void wait_all() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return reader.size() == kEventsPerRun && flaky.size() == kEventsPerRun; });
  }
};

// Two subscribers of every Job: "reader" handles them at once, "flaky" fails every fifth one
// the first time (a retry row, written and deleted). Returns the writes the store made.
int run(const std::string& path, FaultyDisk& disk, int fail_at) {
  Finished done;
  std::set<int> failed_once;
  std::mutex failed_mu;
  {
    crier::Bus bus{crier::sqlite::open(path)};
    auto reader = bus.subscribe<Job>("reader", [&](const Job& j) { done.add(done.reader, j.n); });
    auto flaky = bus.subscribe<Job>("flaky",
                                    [&](const Job& j) {
                                      if (j.n % 5 == 0) {
                                        std::lock_guard lock(failed_mu);
                                        if (failed_once.insert(j.n).second)
                                          throw std::runtime_error("first attempt fails");
                                      }
                                      done.add(done.flaky, j.n);
                                    },
                                    {.retry = {.max_attempts = 3, .immediate_attempts = 1, .initial_delay = 1ms}});
    const int before = disk.writes();
    disk.fail_write(fail_at);
    for (int i = 0; i < kEventsPerRun; ++i) {
      // A publish refused while the store cannot write was not stored: publish it again.
      for (;;) {
        try {
          bus.publish(Job{i, ""});
          break;
        } catch (const crier::Error& e) {
          EXPECT_EQ(e.code(), crier::Errc::transport_error) << e.what();
          std::this_thread::yield();
        }
      }
    }
    done.wait_all();
    const crier::DrainResult r = bus.drain(60s);
    EXPECT_TRUE(r.complete) << "a write failed at " << fail_at;
    EXPECT_EQ(r.undelivered, 0u) << "a write failed at " << fail_at;
    return disk.writes() - before;
  }
}

TEST(SqliteFaults, AWriteThatFailsAnywhereIsTriedAgainAndNothingFinishedComesBack) {
  FaultyDisk disk;
  int writes = 0;
  {
    ScratchDir dir;
    writes = run(dir.file("clean.db"), disk, 0);
  }
  ASSERT_GT(writes, 0);
  // Every write of a clean run up to 60 evenly spread ones: one run fails that write.
  const int step = std::max(1, writes / 60);
  int failed = 0;
  for (int k = 1; k <= writes; k += step) {
    ScratchDir dir;
    const std::string path = dir.file("faulty.db");
    const int before = disk.failed();
    run(path, disk, k);
    failed += disk.failed() - before;
    disk.fail_write(0);
    // Everything finished was recorded as finished: no claim or retry row is left over...
    EXPECT_EQ(raw_query(path, "SELECT count(*) FROM crier_claims"), "0") << "a write failed at " << k;
    EXPECT_EQ(raw_query(path, "SELECT count(*) FROM crier_retries"), "0") << "a write failed at " << k;
    // ...and a restart delivers nothing again.
    crier::Bus again{crier::sqlite::open(path)};
    Counter redelivered;
    auto a = again.subscribe<Job>("reader", [&](const Job&) { redelivered.add(); });
    auto b = again.subscribe<Job>("flaky", [&](const Job&) { redelivered.add(); });
    ASSERT_TRUE(again.flush(60s));
    EXPECT_EQ(redelivered.value(), 0) << "a write failed at " << k;
    if (HasFailure()) break;
  }
  EXPECT_GT(failed, 0) << "no write was failed: the test tested nothing";
  RecordProperty("writes_in_a_run", writes);
  RecordProperty("runs_with_a_failed_write", failed);
}

}  // namespace
