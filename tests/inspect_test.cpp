// The inspection interface the tools use, on the SQLite store: its counts match what happened,
// browsing, moving a subscriber's position (replay and skip), and a CloudEvent published as
// JSON by a foreign producer.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <crier/inspect.hpp>
#include <crier/sqlite.hpp>

#include <algorithm>
#include <map>

#include "durable_events.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {

struct Probe {
  int n = 0;
};
CRIER_EVENT(Probe, "com.example.test.probe");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Probe, n)

const crier::SubscriberStatus* status_of(const std::vector<crier::SubscriberStatus>& all, std::string_view subscriber,
                                         std::string_view type) {
  for (const auto& s : all)
    if (s.subscriber == subscriber && s.event_type == type) return &s;
  return nullptr;
}

TEST(Inspector, CountsMatchWhatHappened) {
  ScratchDir dir;
  auto store = crier::sqlite::open(dir.file("s.db"));
  crier::Inspector& inspect = store->inspector();
  {
    crier::Bus bus{store};
    SeenJobs done;
    auto ok = bus.subscribe<Job>("steady", [&](const Job& j) { done.add(j); });
    crier::SubscribeOptions once;
    once.retry.max_attempts = 1;
    auto fragile = bus.subscribe<Job>(
        "fragile",
        [&](const Job& j) {
          if (j.n % 5 == 0) throw std::runtime_error("multiple of five");
          done.add(j);
        },
        once);
    for (int i = 1; i <= 10; ++i) bus.publish(Job{i, ""});
    for (int i = 1; i <= 3; ++i) bus.publish(Probe{i});
    done.wait_for(10 + 8);
    ASSERT_TRUE(bus.drain().complete);
  }
  const auto subs = inspect.subscribers();
  const auto* steady = status_of(subs, "steady", "com.example.test.job");
  const auto* fragile = status_of(subs, "fragile", "com.example.test.job");
  ASSERT_NE(steady, nullptr);
  ASSERT_NE(fragile, nullptr);
  EXPECT_EQ(steady->lag, 0u);
  EXPECT_EQ(steady->in_flight, 0u);
  EXPECT_EQ(steady->retrying, 0u);
  EXPECT_EQ(steady->dead_letters, 0u);
  EXPECT_EQ(steady->oldest_age, 0ms);
  EXPECT_EQ(fragile->dead_letters, 2u);  // 5 and 10
  EXPECT_EQ(fragile->lag, 0u);
  EXPECT_EQ(steady->position, fragile->position);
  EXPECT_FALSE(steady->position.empty());
  EXPECT_EQ(store->dead_letter_queue().count({.subscriber = "fragile"}), 2u);

  // Jobs, Probes, and the bus's crier.deadlettered announcements (two), by name.
  const auto types = inspect.event_types();
  ASSERT_EQ(types.size(), 3u);
  EXPECT_EQ(types[0].event_type, "com.example.test.job");
  EXPECT_EQ(types[0].events, 10u);
  EXPECT_EQ(types[1].event_type, "com.example.test.probe");
  EXPECT_EQ(types[1].events, 3u);
  EXPECT_EQ(types[1].newest, "13");  // the Probes were published after the ten Jobs
  EXPECT_FALSE(types[1].newest_time.empty());
  EXPECT_EQ(types[2].event_type, "crier.deadlettered");
  EXPECT_EQ(types[2].events, 2u);

  // A subscriber nobody runs now, placed at the start: all ten are its lag, and the oldest
  // is as old as the first Job.
  inspect.move("late", "com.example.test.job", "1");
  const auto later = inspect.subscribers();
  const auto* late = status_of(later, "late", "com.example.test.job");
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(late->lag, 10u);
  EXPECT_EQ(late->position, "");
}

// The counts per type are kept between looks, and only the events stored since are counted
// (the dashboard looks every second; it counted the whole store each time). They stay right
// across publishes, and across a prune made through another connection (another process),
// which empties one type.
// Events a process journaled and did not move into the database before it ended (the
// database locked, or the disk full) are in no count until a store opened for writing moves
// them: a read-only look (crier status) says so instead of showing fewer events. A living
// process's journal is not counted: its own mover is on it.
TEST(Inspector, EventsLeftInTheJournalOfAProcessThatEndedAreNoticed) {
  ScratchDir dir;
  const std::string path = dir.file("s.db");
  crier::sqlite::Options quick;
  quick.busy_timeout = 50ms;
  crier::sqlite::Options read_only;
  read_only.read_only = true;
  auto store = crier::sqlite::open(path, quick);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  sqlite3_busy_timeout(other, 10000);  // the store may be in a transaction just after open
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  {
    crier::Bus bus{store};
    for (int i = 1; i <= 5; ++i) bus.publish(Job{i, ""});  // journaled; the move waits for the lock
  }
  EXPECT_EQ(crier::sqlite::open(path, read_only)->notices(), std::vector<std::string>{}) << "a living store's journal";
  store.reset();  // its journal stays, unlocked, as a process that ended leaves it

  auto look = crier::sqlite::open(path, read_only);
  const auto notices = look->notices();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_TRUE(notices[0].starts_with("5 published events wait in " + path + "-journal.d")) << notices[0];
  EXPECT_EQ(look->event_types().size(), 0u);

  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  auto writer = crier::sqlite::open(path);  // moves them in as it opens
  EXPECT_EQ(look->notices(), std::vector<std::string>{});
  const auto types = look->event_types();
  ASSERT_EQ(types.size(), 1u);
  EXPECT_EQ(types[0].events, 5u);
}

TEST(Inspector, CountsPerTypeStayRightAcrossPublishesAndPrunes) {
  ScratchDir dir;
  const std::string path = dir.file("s.db");
  crier::sqlite::Options keep_all;
  keep_all.retention.every_commits = 0;  // only prune() prunes
  auto store = crier::sqlite::open(path, keep_all);
  auto counts = [](crier::Inspector& in) {
    std::map<std::string, std::pair<std::uint64_t, std::string>> out;  // events, newest
    for (const auto& t : in.event_types()) out[t.event_type] = {t.events, t.newest};
    return out;
  };
  using Counts = std::map<std::string, std::pair<std::uint64_t, std::string>>;
  {
    crier::Bus bus{store};
    for (int i = 1; i <= 10; ++i) bus.publish(Job{i, ""});
    for (int i = 1; i <= 3; ++i) bus.publish(Probe{i});
  }
  EXPECT_EQ(counts(store->inspector()),
            (Counts{{"com.example.test.job", {10, "10"}}, {"com.example.test.probe", {3, "13"}}}));
  {
    crier::Bus bus{store};
    for (int i = 11; i <= 15; ++i) bus.publish(Job{i, ""});
  }
  EXPECT_EQ(counts(store->inspector()),
            (Counts{{"com.example.test.job", {15, "18"}}, {"com.example.test.probe", {3, "13"}}}));

  auto other = crier::sqlite::open(path, keep_all);
  EXPECT_EQ(other->prune({.max_events = 4}), 14u);  // no subscriber: all but the newest 4 are finished
  EXPECT_EQ(counts(store->inspector()), (Counts{{"com.example.test.job", {4, "18"}}}));
  EXPECT_EQ(counts(store->inspector()), counts(crier::sqlite::open(path, keep_all)->inspector()));
}

// A subscriber's lag is counted again from the last count (only the events its position
// passed and those stored since are read: one far behind cost a scan of every event after its
// position at each look). It stays what a count from scratch says as events arrive and the
// position moves forward, back (replay), to the end, and as a bus works through them.
TEST(Inspector, LagStaysRightAsEventsArriveAndThePositionMovesEitherWay) {
  ScratchDir dir;
  const std::string path = dir.file("s.db");
  crier::sqlite::Options keep_all;
  keep_all.retention.every_commits = 0;
  auto store = crier::sqlite::open(path, keep_all);
  crier::Inspector& inspect = store->inspector();
  const std::string job = "com.example.test.job";
  auto lag_in = [&](crier::Inspector& in) {
    const auto all = in.subscribers();
    const auto* s = status_of(all, "s", job);
    return s ? s->lag : ~0ull;
  };
  auto counted_afresh = [&] { return lag_in(crier::sqlite::open(path, keep_all)->inspector()); };
  auto publish = [&](int jobs) {
    crier::Bus bus{store};
    for (int i = 0; i < jobs; ++i) {
      bus.publish(Job{i, ""});
      bus.publish(Probe{i});  // another type between
    }
  };
  publish(10);  // jobs at 1, 3, ..., 19
  inspect.move("s", job, "1");
  EXPECT_EQ(lag_in(inspect), 10u);
  publish(5);
  EXPECT_EQ(lag_in(inspect), 15u);
  inspect.move("s", job, "8");  // past 1, 3, 5, 7
  EXPECT_EQ(lag_in(inspect), 11u);
  EXPECT_EQ(lag_in(inspect), counted_afresh());
  inspect.move("s", job, "4");  // back: 5 and 7 again
  EXPECT_EQ(lag_in(inspect), 13u);
  inspect.move("s", job, "end");
  EXPECT_EQ(lag_in(inspect), 0u);
  publish(3);
  EXPECT_EQ(lag_in(inspect), 3u);
  inspect.move("s", job, "1");
  EXPECT_EQ(lag_in(inspect), 18u);
  EXPECT_EQ(lag_in(inspect), counted_afresh());
  {
    crier::Bus bus{store};
    SeenJobs seen;
    auto sub = bus.subscribe<Job>("s", [&](const Job& j) { seen.add(j); });
    seen.wait_for(18);
    ASSERT_TRUE(bus.flush(30s));
  }
  EXPECT_EQ(lag_in(inspect), 0u);
  EXPECT_EQ(counted_afresh(), 0u);
}

TEST(Inspector, BrowsesStoredEventsFromAPositionEitherWay) {
  ScratchDir dir;
  auto store = crier::sqlite::open(dir.file("s.db"));
  {
    crier::Bus bus{store};
    for (int i = 1; i <= 6; ++i) bus.publish(Job{i, ""});
    bus.publish(Probe{1});
  }
  crier::Inspector& inspect = store->inspector();
  EXPECT_EQ(ns_of(inspect.browse({.event_type = "com.example.test.job", .limit = 3})), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(ns_of(inspect.browse({.event_type = "com.example.test.job", .newest_first = true, .limit = 2})),
            (std::vector<int>{6, 5}));
  const auto from4 = inspect.browse({.event_type = "com.example.test.job", .from = "4"});
  EXPECT_EQ(ns_of(from4), (std::vector<int>{4, 5, 6}));
  EXPECT_EQ(from4.front().position, "4");
  EXPECT_EQ(ns_of(inspect.browse({.event_type = "com.example.test.job", .from = "4", .newest_first = true})),
            (std::vector<int>{4, 3, 2, 1}));
  const auto all = inspect.browse({});
  ASSERT_EQ(all.size(), 7u);
  EXPECT_EQ(all.back().envelope.type, "com.example.test.probe");
  EXPECT_TRUE(inspect.browse({.since = "2999-01-01T00:00:00Z"}).empty());
  EXPECT_EQ(inspect.browse({.since = all[2].envelope.time}).size(), 5u);  // the third and later

  try {
    inspect.browse({.from = "four"});
    FAIL() << "a position the store did not print was taken";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("'four' is not a position"), std::string::npos) << e.what();
  }
}

TEST(Inspector, MovingAPositionReplaysOrSkips) {
  ScratchDir dir;
  auto store = crier::sqlite::open(dir.file("s.db"));
  {
    crier::Bus bus{store};
    SeenJobs seen;
    auto sub = bus.subscribe<Job>("audit", [&](const Job& j) { seen.add(j); });
    for (int i = 1; i <= 8; ++i) bus.publish(Job{i, ""});
    seen.wait_for(8);
    ASSERT_TRUE(bus.drain().complete);
  }
  store->inspector().move("audit", "com.example.test.job", "5");  // replay from the fifth
  {
    crier::Bus bus{store};
    SeenJobs seen;
    auto sub = bus.subscribe<Job>("audit", [&](const Job& j) { seen.add(j); });
    seen.wait_for(4);
    ASSERT_TRUE(bus.drain().complete);
    EXPECT_EQ(seen.values(), (std::vector<int>{5, 6, 7, 8}));
  }
  {
    crier::Bus bus{store};
    for (int i = 9; i <= 10; ++i) bus.publish(Job{i, ""});
  }
  store->inspector().move("audit", "com.example.test.job", "end");  // skip 9 and 10
  {
    crier::Bus bus{store};
    SeenJobs seen;
    auto sub = bus.subscribe<Job>("audit", [&](const Job& j) { seen.add(j); });
    bus.publish(Job{11, ""});
    seen.wait_for(1);
    ASSERT_TRUE(bus.drain().complete);
    EXPECT_EQ(seen.values(), (std::vector<int>{11}));
  }
  EXPECT_THROW(store->inspector().move("no.dots", "com.example.test.job", "1"), crier::Error);
  EXPECT_THROW(store->inspector().move("audit", "com.example.test.job", "0"), crier::Error);
}

TEST(Inspector, ACloudEventPublishedAsJsonReachesSubscribersAndBadOnesAreRefused) {
  ScratchDir dir;
  auto store = crier::sqlite::open(dir.file("s.db"));
  const std::string id = store->inspector().publish_json(
      R"({"specversion":"1.0","id":"py-1","source":"/billing/python","type":"com.example.test.job",)"
      R"("datacontenttype":"application/json","data":{"n":42,"note":"from elsewhere"}})");
  EXPECT_EQ(id, "py-1");
  struct Bad {
    std::string json;
    crier::Errc code;
    std::string says;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"{not json", crier::Errc::invalid_envelope, ""},
           {R"({"specversion":"1.0","id":"x","type":"com.example.test.job"})", crier::Errc::invalid_envelope, "source"},
           {R"({"specversion":"1.0","id":"x","source":"/s","type":"nodots"})", crier::Errc::invalid_name, "nodots"}}) {
    try {
      store->inspector().publish_json(bad.json);
      ADD_FAILURE() << "accepted " << bad.json;
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), bad.code) << e.what();
      EXPECT_NE(std::string(e.what()).find(bad.says), std::string::npos) << e.what();
    }
  }
  crier::Bus bus{store};
  SeenJobs seen;
  std::string source;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j, crier::Delivery& d) {
    source = d.source();
    seen.add(j);
  });
  seen.wait_for(1);
  ASSERT_TRUE(bus.drain().complete);
  EXPECT_EQ(seen.values(), (std::vector<int>{42}));
  EXPECT_EQ(source, "/billing/python");
  EXPECT_EQ(store->inspector().event_types().at(0).events, 1u);  // the bad ones stored nothing
}

}  // namespace
