// The SQLite store itself: files it refuses, restarts, failures it survives, the outbox.
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <crier/sqlite.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>
#include <latch>
#include <map>
#include <thread>

#include "durable_events.hpp"
#include "store_files.hpp"
#include "test_events.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {

// The error open() throws, or "" when it opened.
crier::Error open_error(const std::string& path) {
  try {
    crier::sqlite::open(path);
  } catch (const crier::Error& e) {
    return e;
  }
  return crier::Error(crier::Errc::invalid_argument, "no error");
}

// Publishes until the store refuses, which it must do with a transport error whose message
// holds `why` and says the acknowledged events are not lost. Returns how many were
// acknowledged, or -1 when nothing was refused.
int publish_until_refused(crier::Bus& bus, std::string_view why) {
  for (int i = 0; i < 10'000'000; ++i) {
    try {
      bus.publish(Job{i, ""});
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("not lost"), std::string::npos) << e.what();
      return i;
    }
  }
  return -1;
}

// --- files it refuses ---------------------------------------------------------------------

TEST(SqliteOpen, RefusesAFileThatIsNoDatabaseAndLeavesItAlone) {
  ScratchDir dir;
  const std::string path = dir.file("notes.txt");
  const std::string text(8192, 'x');
  spit(path, text);
  const crier::Error e = open_error(path);
  EXPECT_EQ(e.code(), crier::Errc::store_error);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("not a SQLite database"), std::string::npos) << e.what();
  EXPECT_EQ(slurp(path), text);
}

TEST(SqliteOpen, AReadOnlyStoreReadsAndRefusesWhatWouldWrite) {
  ScratchDir dir;
  const std::string path = dir.file("s.db");
  try {
    (void)crier::sqlite::open(path, {.read_only = true});
    FAIL() << "a missing store was opened read-only";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::not_found);
    EXPECT_NE(std::string(e.what()).find(path + ": no such store file"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  {
    crier::Bus bus{crier::sqlite::open(path)};
    bus.publish(Job{1, "one"});
  }
  auto store = crier::sqlite::open(path, {.read_only = true});
  EXPECT_EQ(store->inspector().event_types().at(0).events, 1u);
  const std::string event = crier::new_envelope("com.example.test.job", R"({"n":2})", "application/json").to_json();
  for (auto write : std::vector<std::function<void()>>{
           [&] { (void)store->inspector().publish_json(event); },
           [&] { store->inspector().move("billing", "com.example.test.job", "1"); },
           [&] { (void)store->dead_letter_queue().purge({}); },
           [&] { (void)store->consume({.subscriber = "billing", .event_type = "com.example.test.job"}); }}) {
    try {
      write();
      ADD_FAILURE() << "a read-only store wrote";
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("opened read-only"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(store->inspector().event_types().at(0).events, 1u);
}

TEST(SqliteOpen, RefusesAnotherApplicationsDatabase) {
  ScratchDir dir;
  const std::string path = dir.file("app.db");
  raw_sql(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)");
  const std::string before = slurp(path);
  const crier::Error e = open_error(path);
  EXPECT_EQ(e.code(), crier::Errc::store_error);
  EXPECT_NE(std::string(e.what()).find("not a crier store (its tables: customers)"), std::string::npos) << e.what();
  EXPECT_EQ(slurp(path), before);
}

TEST(SqliteOpen, RefusesAStoreFromANewerVersion) {
  ScratchDir dir;
  const std::string path = dir.file("new.db");
  crier::sqlite::open(path);
  raw_sql(path, "PRAGMA journal_mode = DELETE; UPDATE crier_meta SET value = '99' WHERE key = 'schema_version'");
  const std::string before = slurp(path);
  const crier::Error e = open_error(path);
  EXPECT_EQ(e.code(), crier::Errc::store_error);
  EXPECT_NE(std::string(e.what()).find("newer crier (schema version 99; this build reads up to 3)"), std::string::npos)
      << e.what();
  EXPECT_EQ(slurp(path), before);
}

TEST(SqliteOpen, RefusesACorruptStore) {
  ScratchDir dir;
  const std::string path = dir.file("corrupt.db");
  {
    crier::Bus bus{crier::sqlite::open(path)};
    for (int i = 0; i < 2000; ++i) bus.publish(Job{i, std::string(100, 'j')});
  }
  raw_sql(path, "PRAGMA journal_mode = DELETE");  // everything in the main file
  std::string bytes = slurp(path);
  ASSERT_GT(bytes.size(), 64u * 1024);
  for (std::size_t i = 16 * 1024; i < 48 * 1024; ++i) bytes[i] = static_cast<char>(i * 7);  // pages 5 to 12
  spit(path, bytes);
  const crier::Error e = open_error(path);
  EXPECT_EQ(e.code(), crier::Errc::store_error) << e.what();
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_EQ(slurp(path), bytes);
}

TEST(SqliteOpen, ADirectoryOrAMissingDirectoryIsRefusedInWords) {
  ScratchDir dir;
  const crier::Error is_dir = open_error(dir.file(""));
  EXPECT_EQ(is_dir.code(), crier::Errc::transport_error);
  EXPECT_NE(std::string(is_dir.what()).find("is a directory"), std::string::npos) << is_dir.what();
  const std::string missing = dir.file("no/such/place/store.db");
  const crier::Error no_dir = open_error(missing);
  EXPECT_NE(std::string(no_dir.what()).find("no such directory: " + dir.file("no/such/place")), std::string::npos)
      << no_dir.what();
  EXPECT_NE(std::string(no_dir.what()).find(missing + ": cannot open the store"), std::string::npos) << no_dir.what();
}

TEST(SqliteOpen, AnEmptyFileBecomesAStore) {
  ScratchDir dir;
  const std::string path = dir.file("empty.db");
  spit(path, "");
  auto store = crier::sqlite::open(path);
  EXPECT_EQ(store->stats().head, 0u);
}

// Services started together on a new store (the demo's, each as its own process) each open
// it at once: one of them makes the schema, none fails ("table crier_meta already exists").
TEST(SqliteOpen, StoresOpenedAtOnceOnANewFileAllOpen) {
  constexpr int kRounds = 20;
  constexpr int kOpeners = 4;
  ScratchDir dir;
  for (int round = 0; round < kRounds; ++round) {
    const std::string path = dir.file("new" + std::to_string(round) + ".db");
    std::latch start(kOpeners);
    std::vector<std::string> errors(kOpeners);
    std::vector<std::thread> openers;
    for (int i = 0; i < kOpeners; ++i)
      openers.emplace_back([&, i] {
        start.arrive_and_wait();
        try {
          crier::sqlite::open(path);
        } catch (const crier::Error& e) {
          errors[static_cast<std::size_t>(i)] = e.what();
        }
      });
    for (auto& t : openers) t.join();
    for (const auto& e : errors) ASSERT_EQ(e, "") << "round " << round;
    EXPECT_EQ(crier::sqlite::open(path)->stats().head, 0u);
  }
}

// --- restarts -----------------------------------------------------------------------------

TEST(SqliteRestart, AcknowledgedPublishesAndDeadLettersOutliveTheProcess) {
  ScratchDir dir;
  const std::string path = dir.file("orders.db");
  {
    crier::Bus bus{crier::sqlite::open(path)};
    auto sub = bus.subscribe<Job>("picky",
                                  [](const Job& j) {
                                    if (j.n == 3) throw std::runtime_error("three is poison");
                                  },
                                  {.retry = immediate(2)});
    for (int i = 0; i < 5; ++i) bus.publish(Job{i, ""});
    ASSERT_TRUE(bus.flush(30s));
    EXPECT_EQ(bus.dead_letter_count(), 1u);
    sub.unsubscribe();
    for (int i = 5; i < 10; ++i) bus.publish(Job{i, ""});  // nobody consumes these now
  }
  crier::Bus bus{crier::sqlite::open(path)};
  auto letters = bus.dead_letters();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].subscriber, "picky");
  EXPECT_EQ(letters[0].last_error, "three is poison");
  EXPECT_EQ(letters[0].attempts, 2);
  SeenJobs jobs;
  auto sub = bus.subscribe<Job>("picky", [&](const Job& j) { jobs.add(j); });
  jobs.wait_for(5);
  EXPECT_EQ(bus.redrive(), 1u);
  jobs.wait_for(6);
  ASSERT_TRUE(bus.flush(30s));
  EXPECT_EQ(jobs.values(), (std::vector<int>{5, 6, 7, 8, 9, 3}));
  EXPECT_EQ(bus.dead_letter_count(), 0u);
}

TEST(SqliteRestart, ADelayedRetryKeepsItsAttemptCountAcrossARestart) {
  ScratchDir dir;
  const std::string path = dir.file("retry.db");
  crier::RetryPolicy later;
  later.max_attempts = 5;
  later.initial_delay = 1ms;
  later.jitter = false;
  {
    crier::Bus bus{crier::sqlite::open(path)};
    Counter failed;
    auto sub = bus.subscribe<Job>("slow",
                                  [&](const Job&) {
                                    failed.add();
                                    throw std::runtime_error("down for now");
                                  },
                                  {.retry = later});
    bus.publish(Job{1, ""});
    failed.wait_for(2);  // two attempts failed: the third waits
    sub.unsubscribe();
  }
  crier::Bus bus{crier::sqlite::open(path)};
  std::atomic<int> attempt{0};
  Counter handled;
  auto sub = bus.subscribe<Job>("slow",
                                [&](const Job&, crier::Delivery& d) {
                                  attempt = d.attempt();
                                  handled.add();
                                },
                                {.retry = later});
  handled.wait_for(1);
  EXPECT_GE(attempt.load(), 3);  // it went on counting where the first process left off
  EXPECT_LE(attempt.load(), 5);
}

// With retries_wait_in_store, a failed event waits for its retry in the store, not in the
// bus: the bus holds nothing for it, the store counts it as retrying, and when it is due any
// consumer of the name takes it, with its attempt count (here another bus, the first one's
// subscription having ended).
TEST(SqliteRetries, ARetryWaitingInTheStoreTakesNoMemoryAndAnyConsumerTakesIt) {
  ScratchDir dir;
  crier::sqlite::Options so;
  so.retries_wait_in_store = true;
  auto store = crier::sqlite::open(dir.file("retries.db"), so);
  crier::SubscribeOptions o;
  o.retry.max_attempts = 3;
  o.retry.initial_delay = 300ms;
  o.retry.jitter = false;
  crier::Bus first{store};
  std::latch failed(1);
  auto sub = first.subscribe<Job>(
      "worker",
      [&](const Job&) {
        failed.count_down();
        throw std::runtime_error("not yet");
      },
      o);
  first.publish(Job{1, ""});
  failed.wait();
  // The failure is recorded just after the handler returns: the store is looked at until it
  // shows, for 10 s at most.
  crier::SubscriberStatus status;
  for (const auto until = std::chrono::steady_clock::now() + 10s;
       (status = store->inspector().subscribers().at(0)).retrying == 0 && std::chrono::steady_clock::now() < until;)
    std::this_thread::yield();
  EXPECT_EQ(status.retrying, 1u);
  EXPECT_EQ(status.in_flight, 0u);
  EXPECT_EQ(stats_of(first, "worker").queued, 0u);  // not waiting in this bus
  sub.unsubscribe();

  crier::Bus second{crier::sqlite::open(dir.file("retries.db"), so)};
  std::latch handled(1);
  std::atomic<int> attempt{0};
  auto again = second.subscribe<Job>(
      "worker",
      [&](const Job&, crier::Delivery& d) {
        attempt = d.attempt();
        handled.count_down();
      },
      o);
  handled.wait();
  EXPECT_EQ(attempt.load(), 2);
  ASSERT_TRUE(second.flush(30s));
  EXPECT_EQ(store->inspector().subscribers().at(0).retrying, 0u);
}

// --- the publish journal --------------------------------------------------------------------

// Publishers far ahead of the database fill the journal's files; past max_journal_bytes they
// wait for the mover instead of taking more disk. Every event arrives, and the files go.
TEST(SqliteJournal, ABurstLargerThanTheJournalArrivesWholeAndTheFilesGo) {
  ScratchDir dir;
  const std::string path = dir.file("burst.db");
  constexpr int kThreads = 4, kPerThread = 5000;  // about 6 MB of journal: three times the bound
  std::vector<int> seen(kThreads * kPerThread, 0);
  {
    crier::sqlite::Options small;
    small.max_journal_bytes = 2 << 20;
    const auto store = crier::sqlite::open(path, small);
    crier::Bus bus{store};
    std::mutex mu;
    Counter handled;
    auto sub = bus.subscribe<Job>("reader", [&](const Job& j) {
      {
        std::lock_guard lock(mu);
        ++seen.at(static_cast<std::size_t>(j.n));
      }
      handled.add();
    });
    std::vector<std::thread> publishers;
    for (int t = 0; t < kThreads; ++t)
      publishers.emplace_back([&bus, t] {
        for (int i = 0; i < kPerThread; ++i) bus.publish(Job{t * kPerThread + i, std::string(250, 'j')});
      });
    for (auto& p : publishers) p.join();
    handled.wait_for(kThreads * kPerThread);
    ASSERT_TRUE(bus.flush(30s));
    const crier::sqlite::StoreStats stats = store->stats();
    EXPECT_EQ(stats.appended, static_cast<std::uint64_t>(kThreads * kPerThread));
    EXPECT_EQ(stats.journaled, 0u) << "flush waits for the move";
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 0), 0) << "events missing";
  std::size_t left = 0;
  for (const auto& f : std::filesystem::directory_iterator(path + "-journal.d")) left += f.path().extension() == ".log";
  EXPECT_EQ(left, 0u) << "a store that moved everything leaves no journal behind";
}

// An event SQLite could never store (a row longer than its length limit) was journaled and
// acknowledged, then failed every move: never delivered, and every store that opened the file
// read its journal again twice a second. Such an event, or one over max_event_bytes, is
// refused by publish, and so is the whole of a batch that holds one.
TEST(SqliteJournal, AnEventLargerThanTheStoreTakesIsRefusedWithNothingOfItsPublishStored) {
  ScratchDir dir;
  const std::string path = dir.file("large.db");
  crier::sqlite::Options small;
  small.max_event_bytes = 1 << 20;
  const auto store = crier::sqlite::open(path, small);
  crier::Bus bus{store};
  const std::vector<Job> batch{Job{1, "small"}, Job{2, std::string(1 << 20, 'x')}};
  try {
    bus.publish_batch(batch);
    ADD_FAILURE() << "an event over max_event_bytes was taken";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("takes at most 1048576"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Nothing of this publish was stored"), std::string::npos) << e.what();
  }
  bus.publish(Job{3, std::string((1 << 20) - 1000, 'x')});  // within the bound, attributes and all
  EXPECT_EQ(store->stats().appended, 1u) << "events journaled";
}

// --- failures it survives -----------------------------------------------------------------

TEST(SqliteFailures, AFullDiskFailsThePublishAndLosesNothingAcknowledged) {
  ScratchDir dir;
  const std::string path = dir.file("full.db");
  int acknowledged = 0;
  {
    crier::sqlite::Options small;
    small.max_bytes = 256 * 1024;
    crier::Bus bus{crier::sqlite::open(path, small)};
    bool full = false;
    for (int i = 0; i < 100000 && !full; ++i) {
      try {
        bus.publish(Job{i, std::string(200, 'f')});
        ++acknowledged;
      } catch (const crier::Error& e) {
        EXPECT_EQ(e.code(), crier::Errc::transport_error);
        EXPECT_NE(std::string(e.what()).find("full"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        full = true;
      }
    }
    ASSERT_TRUE(full);
    EXPECT_THROW(bus.publish(Job{-1, std::string(200, 'f')}), crier::Error);  // still full, still clear
  }
  // Space returns (no cap): everything acknowledged is there, and publishing works again.
  crier::Bus bus{crier::sqlite::open(path)};
  Counter handled;
  std::atomic<int> max_seen{-1};
  auto sub = bus.subscribe<Job>("reader", [&](const Job& j) {
    if (j.n > max_seen) max_seen = j.n;
    handled.add();
  });
  EXPECT_NO_THROW(bus.publish(Job{acknowledged, ""}));
  handled.wait_for(acknowledged + 1);
  ASSERT_TRUE(bus.flush(30s));
  EXPECT_EQ(handled.value(), acknowledged + 1);
  EXPECT_EQ(max_seen.load(), acknowledged);
}

// CPU time this process has used.
std::chrono::nanoseconds process_cpu() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
}

// While the file is full and nothing is published, the mover (with journaled events it cannot
// store) and the subscriber (which cannot record what it reads) try again with back-off: no
// spinning, and one report per change of state, not one per attempt.
TEST(SqliteFailures, AnIdleStoreOnAFullDiskCostsNoCpuAndReportsOnce) {
  ScratchDir dir;
  std::atomic<int> reports{0};
  crier::BusOptions o;
  o.on_error = [&](const crier::Report& r) {
    if (r.kind == crier::Report::Kind::transport_failed) reports.fetch_add(1);
  };
  crier::sqlite::Options small;
  small.max_bytes = 256 * 1024;
  crier::Bus bus{crier::sqlite::open(dir.file("full.db"), small), o};
  Counter handled;
  auto sub = bus.subscribe<Job>("reader", [&](const Job&) { handled.add(); });
  ASSERT_GT(publish_until_refused(bus, "full"), 0);
  // The measuring window: two seconds of a full disk and no publisher, after one in which the
  // back-off grows. (Not waits for an event: nothing is expected to happen in them.)
  std::this_thread::sleep_for(std::chrono::seconds(1));
  constexpr auto kWindow = std::chrono::milliseconds(2000);
  const int reports_before = reports.load();
  const auto cpu_before = process_cpu();
  std::this_thread::sleep_for(kWindow);
  const auto cpu = process_cpu() - cpu_before;
  const int reported = reports.load() - reports_before;
  RecordProperty("cpu_us_per_s_while_full", static_cast<int>(cpu.count() / 1000 / 2));
  RecordProperty("reports_in_window", reported);
  RecordProperty("reports_in_all", reports.load());
  // A spinning store costs a whole core; trying again once a second costs a fraction of a
  // percent (measured ~0.4%), under a sanitizer a few percent.
  EXPECT_LT(cpu, kWindow / 10) << "CPU used in two seconds of a full disk";
  EXPECT_EQ(reported, 0) << "reports in two seconds of a full disk";
  EXPECT_LE(reports.load(), 2) << "reports since the disk filled: one per change of state";
}

// Publish is durable once journaled, so a lock held elsewhere first only delays the move into
// the database; once the move has failed (busy_timeout), publishes fail clearly until it works.
TEST(SqliteFailures, ALockedFileFailsThePublishClearlyThenWorksAgain) {
  ScratchDir dir;
  const std::string path = dir.file("locked.db");
  crier::sqlite::Options quick;
  quick.busy_timeout = 50ms;
  crier::Bus bus{crier::sqlite::open(path, quick)};
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  // The bus's store thread may be in a transaction of its own just after open: wait it out.
  sqlite3_busy_timeout(other, 10000);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  const int acknowledged = publish_until_refused(bus, "write lock");
  ASSERT_GE(acknowledged, 0);
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  Counter handled;
  auto sub = bus.subscribe<Job>("reader", [&](const Job&) { handled.add(); });
  handled.wait_for(acknowledged);  // the journaled ones arrive once the lock is gone
  EXPECT_NO_THROW(bus.publish(Job{-1, ""}));
  handled.wait_for(acknowledged + 1);
  ASSERT_TRUE(bus.flush(30s));
  EXPECT_EQ(handled.value(), acknowledged + 1);  // the refused publish left nothing behind
}

// A dead letter the store refuses to write is reported, and its event is not lost: it comes
// back once its lease has lapsed, and is dead-lettered once the store takes the letter.
TEST(SqliteFailures, ADeadLetterTheStoreRefusesIsReportedAndTriedAgain) {
  ScratchDir dir;
  const std::string path = dir.file("refusing.db");
  crier::sqlite::Options short_lease;
  short_lease.lease = 1s;
  UnstoredLetters unstored;
  crier::Bus bus{crier::sqlite::open(path, short_lease), unstored.options()};
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  sqlite3_busy_timeout(other, 10000);
  ASSERT_EQ(sqlite3_exec(other,
                         "CREATE TRIGGER refuse BEFORE INSERT ON crier_dead_letters "
                         "BEGIN SELECT RAISE(ABORT, 'no letters today'); END",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  auto sub = unstored.give_up_on_jobs(bus);
  bus.publish(Job{1, "x"});
  ASSERT_TRUE(unstored.wait_for(2, 60s)) << "dead-lettering that failed was not reported; handler calls: "
                                         << unstored.calls();
  EXPECT_NE(unstored.last().find("cannot dead-letter event"), std::string::npos) << unstored.last();
  EXPECT_NE(unstored.last().find("no letters today"), std::string::npos) << unstored.last();
  EXPECT_GE(unstored.pause(), 900ms) << "it came back at once";
  ASSERT_EQ(sqlite3_exec(other, "DROP TRIGGER refuse", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  ASSERT_TRUE(bus.flush(60s));
  EXPECT_EQ(bus.dead_letter_count({.subscriber = "strict"}), 1u);
}

TEST(SqliteFailures, AReadOnlyFileIsRefusedAtOpenInWords) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes to read-only files: run as another user to test this";
  ScratchDir dir;
  const std::string path = dir.file("readonly.db");
  {
    crier::Bus bus{crier::sqlite::open(path)};
    bus.publish(Job{1, "before"});
  }
  ASSERT_EQ(chmod(path.c_str(), 0444), 0);
  // Opening it would accept publishes that could never reach the file: refused.
  const crier::Error e = open_error(path);
  EXPECT_EQ(e.code(), crier::Errc::transport_error) << e.what();
  EXPECT_NE(std::string(e.what()).find("read-only for this user"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  crier::Bus bus{crier::sqlite::open(path)};  // writable again: the event is there
  Counter handled;
  auto sub = bus.subscribe<Job>("reader", [&](const Job&) { handled.add(); });
  handled.wait_for(1);
}

TEST(SqliteFailures, AReadOnlyDirectoryIsRefusedAtOpenInWords) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes to read-only directories: run as another user to test this";
  ScratchDir dir;
  const std::string existing = dir.file("store.db");
  crier::sqlite::open(existing);
  ASSERT_EQ(chmod(dir.file("").c_str(), 0555), 0);
  const crier::Error e = open_error(existing);
  EXPECT_NE(std::string(e.what()).find("is read-only for this user"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("journal and WAL files"), std::string::npos) << e.what();
  const crier::Error fresh = open_error(dir.file("new.db"));
  EXPECT_NE(std::string(fresh.what()).find("cannot create the file in"), std::string::npos) << fresh.what();
  EXPECT_NE(std::string(fresh.what()).find("ermission denied"), std::string::npos) << fresh.what();
  ASSERT_EQ(chmod(dir.file("").c_str(), 0755), 0);
}

// A reader of a store no process has open needs SQLite to create its -shm file: an operator
// who may read the file but not write its directory (the store belongs to a service's user;
// a read-only mount) is told that, not only "attempt to write a readonly database".
TEST(SqliteFailures, AReaderWhoMayNotCreateTheSharedIndexIsToldWhatToDo) {
  ScratchDir dir;
  const std::string path = dir.file("store.db");
  {
    crier::Bus bus{crier::sqlite::open(path)};
    bus.publish(Job{1, ""});
  }  // closed: its -wal and -shm are gone
  ASSERT_EQ(chmod(dir.file("").c_str(), 0755), 0);
  const bool root = geteuid() == 0;
  if (!root) {
    ASSERT_EQ(chmod(dir.file("").c_str(), 0555), 0);
  }
  // Root may write any directory: the reader is then a child process as user nobody.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    std::string message = "opened";
    if (root && (setgid(65534) != 0 || setuid(65534) != 0)) message = "cannot become nobody";
    crier::sqlite::Options read_only;
    read_only.read_only = true;
    try {
      crier::sqlite::open(path, read_only);
    } catch (const crier::Error& e) {
      message = e.what();
    }
    (void)!write(fds[1], message.data(), message.size());
    _exit(0);
  }
  close(fds[1]);
  std::string message;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) message.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  waitpid(child, nullptr, 0);
  ASSERT_EQ(chmod(dir.file("").c_str(), 0755), 0);
  EXPECT_NE(message.find("SQLite must create " + path + "-shm beside it, which this user may not"), std::string::npos)
      << message;
}

TEST(SqliteDrain, ADrainCutShortCountsTheEventsLeftAndTheNextBusDeliversThem) {
  constexpr int kEvents = 3000;
  constexpr int kRetrying = 30;  // "waiting" fails these once, and waits 2 s to try again
  const crier::RetryPolicy later{.max_attempts = 2, .initial_delay = 2s, .jitter = false};
  auto distinct = [](std::vector<int> v) {
    std::sort(v.begin(), v.end());
    return static_cast<std::size_t>(std::unique(v.begin(), v.end()) - v.begin());
  };
  ScratchDir dir;
  const std::string path = dir.file("drain.db");
  SeenJobs finished_first;  // what "slow" finished on the first bus
  {
    // "slow" holds its first event until drain's deadline passed, and finishes it: every
    // other event of it is left. "waiting" handled all but the ones waiting for their retry.
    std::latch deadline_passed(1);
    crier::BusOptions o;
    o.on_error = [&](const crier::Report& r) {
      if (r.kind == crier::Report::Kind::drain_deadline) deadline_passed.count_down();
    };
    crier::Bus bus{crier::sqlite::open(path), o};
    std::latch started(1);
    auto slow = bus.subscribe<Job>("slow", [&](const Job& j) {
      started.count_down();
      deadline_passed.wait();
      finished_first.add(j);
    });
    Counter settled;  // handled, or failed once and waiting
    auto waiting = bus.subscribe<Job>("waiting",
                                      [&](const Job& j) {
                                        settled.add();
                                        if (j.n < kRetrying) throw std::runtime_error("not yet");
                                      },
                                      {.retry = later});
    for (int i = 0; i < kEvents; ++i) bus.publish(Job{i, ""});
    started.wait();
    settled.wait_for(kEvents);
    const crier::DrainResult r = bus.drain(50ms);
    EXPECT_FALSE(r.complete);
    // Events, not subscribers: what "slow" did not finish, and "waiting"'s retries.
    ASSERT_EQ(finished_first.values().size(), 1u);
    EXPECT_EQ(r.undelivered, static_cast<std::size_t>(kEvents - 1 + kRetrying));
  }
  // Nothing left is lost, and nothing finished comes back: the next bus delivers exactly what
  // the first one counted.
  crier::Bus bus{crier::sqlite::open(path)};
  SeenJobs seen, retried;
  auto slow = bus.subscribe<Job>("slow", [&](const Job& j) { seen.add(j); });
  auto waiting = bus.subscribe<Job>("waiting", [&](const Job& j) { retried.add(j); }, {.retry = later});
  seen.wait_for(kEvents - 1);
  retried.wait_for(kRetrying);
  const crier::DrainResult r = bus.drain(30s);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.undelivered, 0u);
  std::vector<int> all = seen.values();
  all.push_back(finished_first.values()[0]);
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kEvents)) << "an event finished by the first bus came back";
  EXPECT_EQ(distinct(all), static_cast<std::size_t>(kEvents));
  EXPECT_EQ(retried.values().size(), static_cast<std::size_t>(kRetrying));
  for (int n : retried.values()) EXPECT_LT(n, kRetrying) << "handled by the first bus, delivered again";
}

// Stores a Job row as another program would (with `time` and `data` as given), subscribes,
// publishes one good Job and returns the dead letters once both were dealt with: the good
// one must have been handled whatever became of the foreign one.
std::vector<crier::DeadLetter> letters_after_a_foreign_row(const std::string& time, const std::string& data) {
  ScratchDir dir;
  const std::string path = dir.file("foreign.db");
  crier::Bus bus{crier::sqlite::open(path)};
  raw_sql(path,
          "INSERT INTO crier_events (id, type, source, time, datacontenttype, dataschema, subject, extensions, data, "
          "stored_ms) VALUES ('x-1', 'com.example.test.job', '/elsewhere', '" +
              time +
              "', 'application/json', '', "
              "'', '{}', '" +
              data + "', 0)");
  Counter handled;
  auto sub = bus.subscribe<Job>("reader", [&](const Job&) { handled.add(); });
  bus.publish(Job{1, ""});
  handled.wait_for(1);
  EXPECT_TRUE(bus.flush(30s));
  EXPECT_EQ(handled.value(), 1);
  return bus.dead_letters();
}

TEST(SqliteFailures, DataASubscriberCannotDecodeIsDeadLetteredAndOthersFlow) {
  const auto letters = letters_after_a_foreign_row("2026-11-27T09:00:00.000000Z", "{not json");
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].envelope.id, "x-1");
  EXPECT_NE(letters[0].last_error.find("could not decode"), std::string::npos) << letters[0].last_error;
  EXPECT_EQ(test::occurrences(letters[0].last_error, "crier: "), 0u)
      << letters[0].last_error;  // the codec's error bare
}

TEST(SqliteFailures, AForeignEventWithATimeOutOfRangeIsDeadLetteredWithTheReason) {
  const auto letters = letters_after_a_foreign_row("9999-12-31T23:59:59Z", R"({"n":7,"note":""})");
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].envelope.id, "x-1");
  EXPECT_NE(letters[0].last_error.find("time attribute is invalid"), std::string::npos) << letters[0].last_error;
  EXPECT_NE(letters[0].last_error.find("9999-12-31T23:59:59Z"), std::string::npos) << letters[0].last_error;
}

// Numbers another program (or damage) wrote into a retry row: an attempt count and times no
// Timestamp can hold. The event is delivered (its retry read as due now), with no overflow.
TEST(SqliteFailures, ARetryRowWithNumbersOutOfRangeIsDeliveredWithoutOverflow) {
  ScratchDir dir;
  const std::string path = dir.file("numbers.db");
  crier::Bus bus{crier::sqlite::open(path)};
  bus.publish(Job{1, ""});
  ASSERT_TRUE(bus.flush(30s));
  raw_sql(path,
          "INSERT INTO crier_retries (subscriber, type, seq, attempts, first_error, first_failure_ms, retry_at_ms, "
          "owner, expires_ms) VALUES ('reader', 'com.example.test.job', 1, 9223372036854775807, 'elsewhere', "
          "-9223372036854775807, 9223372036854775807, '', 0)");
  Counter handled;
  auto sub = bus.subscribe<Job>("reader", [&](const Job&) { handled.add(); }, {.start = crier::StartFrom::now()});
  handled.wait_for(1);  // its retry time read as long past: at once, not in 292 years
  ASSERT_TRUE(bus.flush(30s));
  EXPECT_EQ(handled.value(), 1);
  for (const auto& l : bus.dead_letters()) ADD_FAILURE() << "dead-lettered: " << l.last_error;
}

TEST(SqliteFailures, AnEventTypeWithoutACodecIsRefusedSayingWhatToAdd) {
  ScratchDir dir;
  crier::Bus bus{crier::sqlite::open(dir.file("codec.db"))};
  auto expect_no_codec = [](const std::function<void()>& call, const char* what) {
    try {
      call();
      ADD_FAILURE() << what << " did not throw";
    } catch (const crier::Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(e.code(), crier::Errc::codec_error) << what;
      EXPECT_NE(m.find("test::Ping"), std::string::npos) << what << ": " << m;  // the C++ type
      EXPECT_NE(m.find("com.example.test.ping"), std::string::npos) << what << ": " << m;
      EXPECT_NE(m.find("NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Ping,"), std::string::npos) << what << ": " << m;
    }
  };
  expect_no_codec([&] { (void)bus.subscribe<Ping>("reader", [](const Ping&) {}); }, "subscribe");
  expect_no_codec([&] { bus.publish(Ping{1}); }, "publish");
  expect_no_codec([&] { bus.publish_batch(std::vector<Ping>{Ping{1}, Ping{2}}); }, "publish_batch");
  EXPECT_EQ(bus.metrics().subscribers.size(), 0u);
}

TEST(SqliteFailures, InlineSubscribersAreRefusedOnADurableBus) {
  ScratchDir dir;
  crier::Bus bus{crier::sqlite::open(dir.file("inline.db"))};
  EXPECT_THROW((void)bus.subscribe<Job>(
                   "now", [](const Job&) {}, kInline),
               crier::Error);
}

// --- the outbox ---------------------------------------------------------------------------

TEST(SqliteOutbox, TheEventCommitsOrRollsBackWithTheBusinessRow) {
  ScratchDir dir;
  const std::string path = dir.file("shop.db");
  crier::Bus bus{crier::sqlite::open(path)};
  std::mutex mu;
  std::vector<std::string> seen;
  Counter handled;
  auto sub = bus.subscribe<Job>("mailer", [&](const Job& j) {
    {
      std::lock_guard lock(mu);
      seen.push_back(j.note);
    }
    handled.add();
  });
  sqlite3* app = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &app), SQLITE_OK);
  sqlite3_busy_timeout(app, 5000);
  ASSERT_EQ(sqlite3_exec(app, "CREATE TABLE orders (id TEXT PRIMARY KEY)", nullptr, nullptr, nullptr), SQLITE_OK);

  ASSERT_EQ(sqlite3_exec(app, "BEGIN IMMEDIATE; INSERT INTO orders VALUES ('o-1')", nullptr, nullptr, nullptr),
            SQLITE_OK);
  crier::sqlite::publish_in(app, Job{1, "committed"});
  ASSERT_EQ(sqlite3_exec(app, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);

  ASSERT_EQ(sqlite3_exec(app, "BEGIN IMMEDIATE; INSERT INTO orders VALUES ('o-2')", nullptr, nullptr, nullptr),
            SQLITE_OK);
  crier::sqlite::publish_in(app, Job{2, "rolled back"});
  ASSERT_EQ(sqlite3_exec(app, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);

  bus.publish(Job{3, "marker"});  // later than both: once it is handled, so is anything before it
  handled.wait_for(2);
  ASSERT_TRUE(bus.flush(30s));
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(app, "SELECT count(*) FROM orders", -1, &count, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(count, 0), 1);
  sqlite3_finalize(count);
  sqlite3_close(app);
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"committed", "marker"}));
}

TEST(SqliteOutbox, RefusesAFileWithoutAStore) {
  ScratchDir dir;
  sqlite3* app = nullptr;
  ASSERT_EQ(sqlite3_open(dir.file("plain.db").c_str(), &app), SQLITE_OK);
  try {
    crier::sqlite::publish_in(app, Job{1, ""});
    ADD_FAILURE() << "no error";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::store_error);
  }
  sqlite3_close(app);
}

// --- retention and start positions --------------------------------------------------------

// flush() returns once every event is finished in the store, not only handled: what it waited
// for is no longer held (and so can be pruned, and is not delivered again after a crash). The
// handler lets the test call flush() and then returns a little later each time (busy, for 0 to
// 2 ms), so that its acknowledgement lands at every moment of flush()'s look at the store.
TEST(SqliteFlush, WhatAFlushWaitedForIsFinishedInTheStore) {
  ScratchDir dir;
  auto store = crier::sqlite::open(dir.file("flush.db"));
  crier::Bus bus{store};
  Counter handled;
  std::atomic<int> busy_us{0};
  auto sub = bus.subscribe<Job>("s", [&](const Job&) {
    handled.add();
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(busy_us.load());
    while (std::chrono::steady_clock::now() < until) {
    }
  });
  for (int i = 0; i < 200; ++i) {
    busy_us = (i % 100) * 20;
    bus.publish(Job{i, ""});
    handled.wait_for(i + 1);
    ASSERT_TRUE(bus.flush(30s));
    ASSERT_EQ(store->stats().in_flight, 0u) << "after flush " << i << ", the handler busy for " << busy_us << " us";
  }
}

TEST(SqliteRetention, PrunesOnlyWhatEverySubscriberFinished) {
  ScratchDir dir;
  const std::string path = dir.file("keep.db");
  auto store = crier::sqlite::open(path);
  crier::Bus bus{store};
  Counter fast;
  auto a = bus.subscribe<Job>("fast", [&](const Job&) { fast.add(); });
  for (int i = 0; i < 100; ++i) bus.publish(Job{i, ""});
  fast.wait_for(100);
  ASSERT_TRUE(bus.flush(30s));
  EXPECT_EQ(store->prune({.max_events = 10}), 90u);
  EXPECT_EQ(store->stats().events, 10u);

  // A subscriber that has read nothing of the next events holds them.
  auto b =
      bus.subscribe<Job>("slow", [&](const Job&) { throw std::runtime_error("never done"); }, {.retry = immediate(1)});
  ASSERT_TRUE(bus.flush(30s));  // "slow" dead-lettered the 10 it found: they stay as its letters
  b.unsubscribe();
  for (int i = 100; i < 150; ++i) bus.publish(Job{i, ""});
  fast.wait_for(150);
  ASSERT_TRUE(bus.flush(30s));
  store->prune({.max_events = 1});
  EXPECT_EQ(store->stats().events, 60u);  // 10 dead letters + 50 "slow" has not read
}

}  // namespace

namespace {

// The names of this process's threads, as top -H and gdb show them, counted.
std::map<std::string, int> thread_names() {
  std::map<std::string, int> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) ++names[name];
  }
  return names;
}

}  // namespace

TEST(SqliteThreads, EachOfCriersThreadsIsNamedForWhatItDoes) {
  ScratchDir dir;
  std::thread([] {}).join();  // ThreadSanitizer starts a thread of its own beside a program's first
  const auto before = thread_names();
  crier::Bus bus{crier::sqlite::open(dir.file("named.db")), crier::BusOptions{.worker_threads = 3}};
  SeenJobs jobs;
  auto sub = bus.subscribe<Job>("named", [&](const Job& j) { jobs.add(j); });
  bus.publish(Job{1, "one"});
  jobs.wait_for(1);
  auto now = thread_names();
  for (const auto& [name, n] : before) now[name] -= n;  // what other tests left running
  EXPECT_EQ(now["crier-worker"], 3);
  EXPECT_EQ(now["crier-bg-worker"], 1);
  EXPECT_EQ(now["crier-feed"], 1);
  EXPECT_EQ(now["crier-journal"], 1);
  EXPECT_EQ(now["crier-watch"], 1);
  // A thread crier starts without a name has the program's (Linux gives it the process's).
  std::string program, all;
  std::getline(std::ifstream("/proc/self/comm"), program);
  for (const auto& [name, n] : now)
    if (n > 0) all += name + " x" + std::to_string(n) + ", ";
  EXPECT_LE(now[program], 0) << "a thread without a name of its own among those the bus started: " << all;
}

// A store file deleted under the bus (an operator, a clean-up job): the events published
// after stay in the journal, publishes are refused once the mover finds the file gone, saying
// so (SQLite's own error was "disk I/O error"), and every one acknowledged is in the store
// opened at the path again.
TEST(SqliteFailures, EventsPublishedAfterTheStoreFileWasDeletedAreKeptAndThenRefused) {
  ScratchDir dir;
  const std::string path = dir.file("s.db");
  std::vector<int> kept;
  {
    const auto before = crier::sqlite::open(path);
    crier::Bus bus{before};
    bus.publish(Job{0, "before: in the file deleted (and in the journal, which may bring it again)"});
    // Moved into the file before it goes (the inspector waits for that): else its move
    // would fail first, and no publish after the deletion might be taken.
    ASSERT_EQ(before->event_types().at(0).events, 1u);
    std::filesystem::remove(path);
    std::string refusal;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (int n = 1; refusal.empty() && std::chrono::steady_clock::now() < deadline; ++n) {
      try {
        bus.publish(Job{n, "after"});
        kept.push_back(n);
      } catch (const crier::Error& e) {
        refusal = e.what();
      }
    }
    EXPECT_NE(refusal.find(path + ": the store file was deleted or moved while open"), std::string::npos)
        << (refusal.empty() ? "publishes were never refused" : refusal);
  }
  auto store = crier::sqlite::open(path);
  std::vector<int> stored;
  for (const auto& e : store->inspector().browse({.event_type = "com.example.test.job", .limit = 1'000'000}))
    if (const int n = nlohmann::json::parse(e.envelope.data).at("n"); n != 0) stored.push_back(n);
  std::sort(stored.begin(), stored.end());
  EXPECT_FALSE(kept.empty());
  EXPECT_EQ(stored, kept);
}
