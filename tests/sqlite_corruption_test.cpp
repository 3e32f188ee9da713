// Damaged stores: a row whose contents changed on disk is found by its checksum, reported and
// dead-lettered with the file and sequence, and never skipped; verify() lists it.
#include <gtest/gtest.h>

#include <sqlite3.h>
#include <crier/sqlite.hpp>

#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>

#include "durable_events.hpp"
#include "store_files.hpp"
#include "test_events.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {

constexpr int kStoredEvents = 20000;

// The note of Job n: a marker to find its row in the file, then padding, so that 64 bytes
// after the marker are all inside that row's data.
std::string note_of(int n) {
  char marker[32];
  std::snprintf(marker, sizeof marker, "job-%06d-", n);
  return marker + std::string(120, 'p');
}

// A store of `count` Jobs (published in order: Job n has sequence n + 1), closed, so that
// everything is in the database file itself.
void write_store(const std::string& path, int count) {
  {
    crier::Bus bus{crier::sqlite::open(path)};
    for (int n = 0; n < count; ++n) bus.publish(Job{n, note_of(n)});
  }
  ASSERT_FALSE(std::filesystem::exists(path + "-wal")) << "the last connection folds the WAL into the file";
}

// Where in the file the row of Job n keeps its data.
std::size_t offset_of(const std::string& bytes, int n) {
  const std::size_t at = bytes.find(note_of(n).substr(0, 11));
  EXPECT_NE(at, std::string::npos) << "Job " << n << " not found in the file";
  return at;
}

// What a bus reading a damaged store saw: the reports of damage, and the letters.
struct Reading {
  int handled = 0;
  std::vector<std::string> corrupt_reports;
  std::vector<crier::DeadLetter> letters;
  std::uint64_t corrupt_counted = 0;
};

// Opens the store at `path`, lets subscriber `name` read every Job from the start, and tells
// what became of them.
Reading read_all(const std::string& path, const char* name = "reader") {
  Reading r;
  std::mutex mu;
  crier::BusOptions options;
  options.on_error = [&](const crier::Report& report) {
    if (report.kind != crier::Report::Kind::corrupt_event) return;
    std::lock_guard lock(mu);
    r.corrupt_reports.emplace_back(report.message);
  };
  crier::Bus bus{crier::sqlite::open(path), options};
  Counter handled;
  auto sub = bus.subscribe<Job>(name, [&](const Job&) { handled.add(); });
  EXPECT_TRUE(bus.flush(120s));
  r.handled = handled.value();
  r.letters = bus.dead_letters();
  for (const auto& s : bus.metrics().subscribers)
    if (s.name == name) r.corrupt_counted = s.corrupt;
  std::lock_guard lock(mu);
  return r;
}

TEST(SqliteCorruption, AnEventDamagedOnDiskIsDeadLetteredWithItsFileAndSequence) {
  ScratchDir dir;
  const std::string path = dir.file("damaged.db");
  write_store(path, kStoredEvents);
  std::string bytes = slurp(path);
  // 64 random bytes over the data of Job 10000 (sequence 10001), in the middle of its page.
  std::mt19937 random(42);
  const std::size_t at = offset_of(bytes, 10000) + 11;
  for (std::size_t i = 0; i < 64; ++i) bytes[at + i] = static_cast<char>(random() & 0xff);
  spit(path, bytes);
  ASSERT_EQ(raw_query(path, "PRAGMA integrity_check"), "ok") << "SQLite does not see damage inside a row";

  const Reading r = read_all(path);
  EXPECT_EQ(r.handled, kStoredEvents - 1);
  ASSERT_EQ(r.letters.size(), 1u);
  const std::string where = "corrupt event in " + path + " at sequence 10001";
  EXPECT_NE(r.letters[0].last_error.find(where), std::string::npos) << r.letters[0].last_error;
  EXPECT_NE(r.letters[0].last_error.find("checksum"), std::string::npos) << r.letters[0].last_error;
  ASSERT_EQ(r.corrupt_reports.size(), 1u);
  EXPECT_NE(r.corrupt_reports[0].find(where), std::string::npos) << r.corrupt_reports[0];
  EXPECT_EQ(r.corrupt_counted, 1u);

  const crier::sqlite::VerifyResult v = crier::sqlite::open(path)->verify();
  EXPECT_EQ(v.events, static_cast<std::uint64_t>(kStoredEvents));
  EXPECT_EQ(v.corrupt, (std::vector<std::uint64_t>{10001}));
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_NE(v.problems[0].find("sequence 10001: its checksum does not match"), std::string::npos) << v.problems[0];
}

// The worst case for a reader that selects its events by type: the damage renames the type.
// The row's checksum keeps the type's own CRC, so readers know it cannot be trusted, and every
// subscriber that passes it dead-letters it: it may have been any of theirs.
TEST(SqliteCorruption, AnEventWhoseTypeWasDamagedIsDeadLetteredByEverySubscriber) {
  ScratchDir dir;
  const std::string path = dir.file("renamed.db");
  write_store(path, 100);
  std::string bytes = slurp(path);
  const std::size_t type_at = bytes.rfind("com.example.test.job", offset_of(bytes, 50));
  ASSERT_NE(type_at, std::string::npos);
  bytes[type_at + 17] = 'x';  // com.example.test.xob: a valid name, of nobody's events
  spit(path, bytes);
  ASSERT_EQ(raw_query(path, "PRAGMA integrity_check"), "ok");

  const Reading jobs = read_all(path, "jobs");
  EXPECT_EQ(jobs.handled, 99);
  ASSERT_EQ(jobs.letters.size(), 1u);
  EXPECT_NE(jobs.letters[0].last_error.find("at sequence 51: its checksum does not match"), std::string::npos)
      << jobs.letters[0].last_error;
  EXPECT_NE(jobs.letters[0].last_error.find("its type cannot be trusted"), std::string::npos)
      << jobs.letters[0].last_error;

  // A subscriber of another type meets it too, and does not skip it silently either.
  crier::Bus bus{crier::sqlite::open(path)};
  Counter orders;
  auto sub = bus.subscribe<Order>("orders", [&](const Order&) { orders.add(); });
  ASSERT_TRUE(bus.flush(60s));
  EXPECT_EQ(orders.value(), 0);
  EXPECT_EQ(bus.dead_letter_count({.subscriber = "orders"}), 1u);
}

// A store written before events carried checksums gets them when it is opened, and the
// outbox (SQL through the application's connection) writes them too.
TEST(SqliteCorruption, AnOlderStoreGetsChecksumsAndTheOutboxWritesThem) {
  ScratchDir dir;
  const std::string path = dir.file("older.db");
  write_store(path, 50);
  raw_sql(path,
          "ALTER TABLE crier_events DROP COLUMN crc; ALTER TABLE crier_retries DROP COLUMN edited_data; "
          "ALTER TABLE crier_dead_letters DROP COLUMN edited_data; ALTER TABLE crier_cursors DROP COLUMN settled_ms; "
          "UPDATE crier_meta SET value = '1' WHERE key = "
          "'schema_version'");
  {
    auto store = crier::sqlite::open(path);
    EXPECT_EQ(raw_query(path, "SELECT count(*) FROM crier_events WHERE crc IS NULL"), "0");
  }
  sqlite3* app = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &app), SQLITE_OK);
  crier::sqlite::publish_in(app, Job{50, note_of(50)});
  sqlite3_close(app);

  const crier::sqlite::VerifyResult v = crier::sqlite::open(path)->verify();
  EXPECT_TRUE(v.ok()) << (v.problems.empty() ? "" : v.problems[0]);
  EXPECT_EQ(v.events, 51u);
  const Reading r = read_all(path);
  EXPECT_EQ(r.handled, 51);
  EXPECT_TRUE(r.letters.empty());
}

}  // namespace
