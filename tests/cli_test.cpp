// The crier command-line tool, run as a program against real store files: what it prints
// matches the store, it changes only what it is told to, and bad input (a missing or foreign
// file, a malformed CloudEvent on stdin, an unknown subscriber, an unconfirmed purge) gets an
// error that says what and where, with its documented exit code.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <crier/sqlite.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_process.hpp"
#include "test_events.hpp"

using namespace test;

TEST_F(CliTest, StatusShowsWhereEachSubscriberStandsAndWritesNothing) {
  // The store's files: SQLite's own -wal and -shm aside, which a reader of a WAL file may
  // create (they coordinate readers and writers; they hold no data of a closed store).
  auto beside = [&] {
    std::set<std::string> names;
    for (const auto& f : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
      const std::string name = f.path().filename().string();
      if (name.rfind("orders.db", 0) == 0 && name != "orders.db-wal" && name != "orders.db-shm") names.insert(name);
    }
    return names;
  };
  const std::string before = read_file(path);
  const auto files_before = beside();
  const Outcome r = run_crier(dir, {"status", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("billing"), std::string::npos) << r.out;
  const Outcome j = run_crier(dir, {"status", path, "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  const auto status = nlohmann::json::parse(j.out);
  auto by_name = subscribers_by_name(status);
  EXPECT_EQ(by_name.at("billing")["lag"], 0);
  EXPECT_EQ(by_name.at("billing")["dead_letters"], 4);
  EXPECT_EQ(by_name.at("audit")["lag"], 20);
  EXPECT_TRUE(by_name.at("billing")["idle_ms"].is_number()) << by_name.at("billing");
  EXPECT_TRUE(by_name.at("audit")["idle_ms"].is_null()) << "audit never finished an event";
  ASSERT_EQ(status["event_types"].size(), 2u);  // the jobs, and the dead-letter announcements
  EXPECT_EQ(read_file(path), before) << "status changed the store file";
  EXPECT_EQ(beside(), files_before) << "status made or removed files beside the store";
}

// Events journaled by a process that ended before moving them into the database are in no
// count of a read-only look: status says how many wait, and where, rather than show fewer.
TEST_F(CliTest, StatusSaysWhatWaitsInTheJournalOfAProcessThatEnded) {
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  sqlite3_busy_timeout(other, 10000);
  {
    crier::sqlite::Options quick;
    quick.busy_timeout = std::chrono::milliseconds(50);
    crier::Bus bus{crier::sqlite::open(path, quick)};
    ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
    for (int i = 0; i < 3; ++i) bus.publish(Job{i, ""});  // journaled; the move waits for the lock
  }  // its journal stays, unlocked, as a process that ended leaves it
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  const Outcome r = run_crier(dir, {"status", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("note: 3 published events wait in " + path + "-journal.d"), std::string::npos) << r.out;
  const Outcome j = run_crier(dir, {"status", path, "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_EQ(nlohmann::json::parse(j.out)["notices"].size(), 1u) << j.out;
  crier::sqlite::open(path);  // moves them in
  EXPECT_EQ(run_crier(dir, {"status", path}).out.find("note:"), std::string::npos);
}

TEST_F(CliTest, AMissingOrForeignFileIsRefusedAndLeftAlone) {
  const std::string missing = dir.file("nothing.db");
  Outcome r = run_crier(dir, {"status", missing});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find(missing + ": no such store file"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(missing)) << "the tool created a store";
  r = run_crier(dir, {"publish", "sqlite://" + missing, "--type", job, "--data", "{}"});  // named as a URL
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find(missing + ": no such store file"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(missing)) << "the tool created a store";

  const std::string text = dir.file("notes.txt");
  std::ofstream(text) << "not a database, just notes\n";
  r = run_crier(dir, {"tail", text});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(text), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a SQLite database"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(text), "not a database, just notes\n");
  EXPECT_NE(r.err.find(text + ": cannot be read: "), std::string::npos) << r.err;  // not the SQL that found it

  r = run_crier(dir, {"status", dir.file("")});  // a directory: there, but no store
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("is a directory, not a store file"), std::string::npos) << r.err;

  r = run_crier(dir, {"status", "kafka://127.0.0.1:1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no transport opens kafka:// URLs"), std::string::npos) << r.err;
}

TEST_F(CliTest, TailPrintsFiltersAndWritesCloudEvents) {
  Outcome r = run_crier(dir, {"tail", path, "--type", job, "--limit", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto l = lines(r.out);
  ASSERT_EQ(l.size(), 5u) << r.out;
  EXPECT_NE(l.back().find("\"n\":20"), std::string::npos) << "the newest last: " << l.back();
  r = run_crier(dir, {"tail", path, "--type", job, "-n", "2"});  // as tail(1) says it
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out).size(), 2u) << r.out;

  r = run_crier(dir, {"tail", path, "--type", job, "--from", "beginning", "--limit", "0", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  l = lines(r.out);
  ASSERT_EQ(l.size(), 20u);
  const auto first = crier::Envelope::from_json(l.front());  // valid CloudEvents JSON
  EXPECT_EQ(first.type, job);
  EXPECT_EQ(nlohmann::json::parse(first.data)["n"], 1);

  r = run_crier(dir, {"tail", path, "--type", job, "--from", "beginning", "--limit", "0", "--grep", "job 1"});
  EXPECT_EQ(lines(r.out).size(), 11u) << r.out;  // job 1 and job 10..19

  r = run_crier(dir, {"tail", path, "--from", "yesterday-ish"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("'yesterday-ish' is not a time"), std::string::npos) << r.err;
}

// Found by a dead letter whose error was Latin-1: every JSON the tool wrote failed on it
// ("[json.exception.type_error.316] invalid UTF-8 byte"), and wrote nothing. Bytes that are
// not UTF-8 are shown as U+FFFD; everything else is shown as it is.
TEST_F(CliTest, BytesThatAreNotUtf8AreShownAsReplacementCharacters) {
  (void)store_text_that_is_not_utf8(path);
  const std::string replacement = "\xef\xbf\xbd";  // U+FFFD

  Outcome r = run_crier(dir, {"dlq", "list", path, "--subscriber", "legacy", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(lines(r.out).size(), 1u) << r.out;
  const auto letter = nlohmann::json::parse(r.out);
  EXPECT_EQ(letter["last_error"], "customer M" + replacement + "ller has no account");
  r = run_crier(dir, {"dlq", "show", path, std::to_string(letter["id"].get<std::uint64_t>())});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["event"]["data"]["note"], "M\xc3\xbcller") << r.out;

  r = run_crier(dir, {"tail", path, "--type", job, "--limit", "2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), 2u) << r.out;
  const auto old = crier::Envelope::from_json(l.front());
  EXPECT_EQ(old.subject, "order-" + replacement);
  EXPECT_EQ(nlohmann::json::parse(old.data)["n"], 22);
  r = run_crier(dir, {"republish", path, old.id});  // as it is, it is no CloudEvent
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("subject is not UTF-8 (byte 0xFF at offset 6) (event id " + old.id + "); not republished"),
            std::string::npos)
      << r.err;

  r = run_crier(dir, {"status", path, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(nlohmann::json::accept(r.out)) << r.out;
}

TEST_F(CliTest, PublishTakesOneEventOrCloudEventLinesAndStopsAtABadOne) {
  Outcome r =
      run_crier(dir, {"publish", path, "--type", job, "--data", R"({"n":21,"note":"by hand"})", "--subject", "s-21"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_crier(dir, {"tail", path, "--type", job, "--limit", "1", "--json"});
  const auto e = crier::Envelope::from_json(lines(r.out).at(0));
  EXPECT_EQ(e.subject, "s-21");
  EXPECT_EQ(nlohmann::json::parse(e.data)["n"], 21);

  crier::Envelope good = e;
  good.id = crier::Uuid::v7().to_string();
  const std::string input = good.to_json() + "\n{\"specversion\":\"1.0\",\"id\":\"x\"}\n" + good.to_json() + "\n";
  r = run_crier(dir, {"publish", path, "-"}, input);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("stdin line 2"), std::string::npos) << r.err;
  EXPECT_EQ(test::occurrences(r.err, "crier: "), 1u) << r.err;
  EXPECT_NE(r.err.find("(1 event before it published)"), std::string::npos) << r.err;
  r = run_crier(dir, {"status", path, "--json"});
  const auto status = nlohmann::json::parse(r.out);
  for (const auto& t : status["event_types"])
    if (t["event_type"] == job) {
      EXPECT_EQ(t["events"], 22);
    }

  r = run_crier(dir, {"publish", path, "--type", job, "--data", "{not json"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--data is not JSON"), std::string::npos) << r.err;
  r = run_crier(dir, {"publish", path, "--type", job, "--data", "{}", "--subject", "M\xfcller"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("subject is not UTF-8 (byte 0xFC at offset 1)"), std::string::npos) << r.err;
  EXPECT_EQ(test::occurrences(r.err, "crier: "), 1u) << r.err;
}

TEST_F(CliTest, DeadLettersAreListedShownAndRepairedOnlyWhenConfirmed) {
  Outcome r = run_crier(dir, {"dlq", "list", path, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), 4u);
  const auto letter = nlohmann::json::parse(l.front());
  EXPECT_EQ(letter["subscriber"], "billing");
  EXPECT_EQ(letter["last_error"], "job 5 has no price");
  const std::string id = std::to_string(letter["id"].get<std::uint64_t>());

  r = run_crier(dir, {"dlq", "show", path, id});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["event"]["data"]["note"], "job 5") << r.out;
  r = run_crier(dir, {"dlq", "show", path, "999999"});
  EXPECT_EQ(r.code, 3);

  r = run_crier(dir, {"dlq", "redrive", path, "--id", id});  // stdin is no terminal: not confirmed
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("wants --yes"), std::string::npos) << r.err;
  EXPECT_EQ(lines(run_crier(dir, {"dlq", "list", path, "--json"}).out).size(), 4u)
      << "an unconfirmed redrive changed it";

  r = run_crier(dir, {"dlq", "redrive", path, id, "999999", "--yes"});  // one of them mistyped
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("no dead letter 999999; nothing was done"), std::string::npos) << r.err;
  EXPECT_EQ(lines(run_crier(dir, {"dlq", "list", path, "--json"}).out).size(), 4u) << "a refused redrive changed it";

  r = run_crier(dir, {"dlq", "redrive", path, id, "--yes"});  // ids as arguments, as dlq show takes one
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "redrove 1 dead letter\n");
  r = run_crier(dir, {"dlq", "purge", path, "--subscriber", "billing", "--all", "--yes"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "purged 3 dead letters\n");
  EXPECT_EQ(run_crier(dir, {"dlq", "list", path, "--json"}).out, "");
}

TEST_F(CliTest, ReplayMovesAKnownSubscriberAndRefusesAnUnknownOne) {
  Outcome r = run_crier(dir, {"replay", path, "--subscriber", "nobody", "--type", job, "--to", "1", "--yes"});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("'nobody' has never read"), std::string::npos) << r.err;

  r = run_crier(dir, {"replay", path, "--subscriber", "billing", "--type", job, "--to", "-1h", "--yes"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_crier(dir, {"status", path, "--json"});
  const auto status = nlohmann::json::parse(r.out);
  for (const auto& s : status["subscribers"])
    if (s["subscriber"] == "billing" && s["event_type"] == job) {
      EXPECT_EQ(s["lag"], 20);
    }
}

TEST_F(CliTest, UsageErrorsSayWhatIsWrong) {
  Outcome r = run_crier(dir, {"frobnicate"});
  EXPECT_EQ(r.code, 2);
  r = run_crier(dir, {"dlq", "purge", path, "--yes"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("ID... (or --id ID...) or --all"), std::string::npos) << r.err;
  r = run_crier(dir, {"status", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Example: crier status"), std::string::npos) << r.out;
}

TEST_F(CliTest, AnEditedDeadLetterGoesBackToItsSubscriberAloneAndKeepsItsEditIfItFailsAgain) {
  const auto letters = lines(run_crier(dir, {"dlq", "list", path, "--json", "--subscriber", "billing"}).out);
  const std::string id = std::to_string(nlohmann::json::parse(letters.at(0))["id"].get<std::uint64_t>());  // job 5
  // The editor is a program the environment names; these scripts change the file in place.
  auto editor = [&](const std::string& name, const std::string& script) {
    const std::string file = dir.file(name);
    std::ofstream(file) << "#!/bin/sh\n" << script << "\n";
    std::filesystem::permissions(file, std::filesystem::perms::owner_all);
    return std::map<std::string, std::string>{{"EDITOR", file}, {"VISUAL", ""}};
  };
  const auto note_only = editor("note-only", "sed -i 's/job 5/job 5 checked/' \"$1\"");
  const auto no_change = editor("no-change", "true");
  const auto breaks_it = editor("breaks-it", "sed -i 's/{/[/' \"$1\"");

  Outcome r = run_crier(dir, {"dlq", "redrive", path, "--edit", id, "--yes"}, "", no_change);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("the data was not changed"), std::string::npos) << r.err;
  r = run_crier(dir, {"dlq", "redrive", path, "--edit", id, "--yes"}, "", breaks_it);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("the edited data is not JSON"), std::string::npos) << r.err;
  r = run_crier(dir, {"dlq", "redrive", path, "--edit", id}, "", note_only);  // not confirmed
  EXPECT_EQ(r.code, 2);
  ASSERT_EQ(lines(run_crier(dir, {"dlq", "list", path, "--json"}).out).size(), 4u) << "a refused edit changed it";

  r = run_crier(dir, {"dlq", "redrive", path, "--edit", id, "--yes"}, "", note_only);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "redrove dead letter " + id + " to billing with edited data\n");

  // billing fails job 5 again (n is still 5): the new letter holds the edited data.
  std::vector<std::string> notes;
  std::mutex mu;
  {
    auto store = crier::sqlite::open(path);
    crier::Bus bus{store};
    auto billing = bus.subscribe<Job>("billing", [&](const Job& j) {
      {
        std::lock_guard lock(mu);
        notes.push_back(j.note);
      }
      if (j.n % 5 == 0) throw crier::PermanentError("job " + std::to_string(j.n) + " has no price");
    });
    ASSERT_TRUE(bus.drain(std::chrono::seconds(30)).complete);
  }
  EXPECT_EQ(notes, std::vector<std::string>{"job 5 checked"});
  const auto again = lines(run_crier(dir, {"dlq", "list", path, "--json", "--subscriber", "billing"}).out);
  ASSERT_EQ(again.size(), 4u);
  const std::string new_id = std::to_string(nlohmann::json::parse(again.back())["id"].get<std::uint64_t>());
  r = run_crier(dir, {"dlq", "show", path, new_id});
  EXPECT_EQ(nlohmann::json::parse(r.out)["event"]["data"]["note"], "job 5 checked") << r.out;

  // The stored event is as it was: audit, which never read it, gets the original.
  r = run_crier(dir, {"tail", path, "--type", job, "--from", "beginning", "--limit", "0", "--grep", "job 5"});
  EXPECT_EQ(lines(r.out).size(), 1u) << r.out;
  EXPECT_EQ(r.out.find("checked"), std::string::npos) << r.out;

  r = run_crier(dir, {"dlq", "redrive", path, "--edit", "999999", "--yes"}, "", note_only);
  EXPECT_EQ(r.code, 3);
}

TEST_F(CliTest, RedriveAtARateAndRepublishAStoredEvent) {
  Outcome r = run_crier(dir, {"dlq", "redrive", path, "--all", "--rate", "1000", "--yes"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "redrove 4 dead letters\n");
  r = run_crier(dir, {"dlq", "redrive", path, "--all", "--rate", "-3", "--yes"});
  EXPECT_EQ(r.code, 2);

  const auto first = crier::Envelope::from_json(
      lines(run_crier(dir, {"tail", path, "--type", job, "--from", "beginning", "--limit", "1", "--json"}).out).at(0));
  r = run_crier(dir, {"republish", path, first.id});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string copy_id = lines(r.out).at(0);
  EXPECT_NE(copy_id, first.id);
  const auto copy = crier::Envelope::from_json(
      lines(run_crier(dir, {"tail", path, "--type", job, "--limit", "1", "--json"}).out).at(0));
  EXPECT_EQ(copy.id, copy_id);
  EXPECT_EQ(copy.data, first.data);
  EXPECT_EQ(copy.extensions.at("republishedof"), first.id);
  r = run_crier(dir, {"republish", path, "no-such-id"});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("no stored event has id no-such-id"), std::string::npos) << r.err;
}

TEST_F(CliTest, CtrlCStopsABulkPublishBetweenEventsAndSaysHowFarItGot) {
  crier::Envelope e = crier::new_envelope(job, R"({"n":100,"note":"bulk"})", "application/json");
  RunningCrier publish(dir, {"publish", path, "-"});
  publish.write(e.to_json() + "\n");
  // Stored once tail finds it; then the publisher waits for its next line.
  for (int look = 0;; ++look) {
    ASSERT_LT(look, 2000) << "the first event was never stored: " << publish.err();
    const Outcome t = run_crier(dir, {"tail", path, "--type", job, "--limit", "1", "--json"});
    if (t.out.find(e.id) != std::string::npos) break;
  }
  publish.signal(SIGINT);
  EXPECT_EQ(publish.wait(), 130);
  EXPECT_NE(publish.err().find("stopped by Ctrl-C: published 1 event,"), std::string::npos) << publish.err();
}

TEST_F(CliTest, StatusCountsTheLastMinutePerType) {
  const Outcome r = run_crier(dir, {"status", path, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto status = nlohmann::json::parse(r.out);  // kept: the loop reads into it
  for (const auto& t : status["event_types"])
    if (t["event_type"] == job) {
      EXPECT_EQ(t["last_minute"], 20);
    }
}

TEST_F(CliTest, StatusWatchLooksAgainUntilCtrlC) {
  RunningCrier watch(dir, {"status", path, "--watch", "--every", "0.2"});
  int looks = 0;
  for (auto l = watch.line(); l; l = watch.line())  // nullopt: it ended
    if (l->rfind("SUBSCRIBER", 0) == 0 && ++looks == 2) break;
  EXPECT_EQ(looks, 2);
  watch.signal(SIGINT);
  EXPECT_EQ(watch.wait(), 0) << watch.err();
}

TEST_F(CliTest, StatusShowsEachBreakerAsItsBusLastAnnouncedIt) {
  const std::string store_path = dir.file("breakers.db");
  {
    crier::Bus bus{crier::sqlite::open(store_path)};
    auto fail = [](const Job& j) {
      if (j.n == 1) throw std::runtime_error("warehouse unreachable");
    };
    // Opened, its cool-down an hour away; opened with no cool-down (a probe is due); opened
    // and closed again by a probe that succeeded; and one with no breaker at all.
    auto shipping = bus.subscribe<Job>("shipping", fail,
                                       {.breaker = {.consecutive_failures = 1, .cooldown = std::chrono::hours(1)}});
    auto pricing = bus.subscribe<Job>(
        "pricing", fail, {.breaker = {.consecutive_failures = 1, .cooldown = std::chrono::milliseconds(0)}});
    auto stock = bus.subscribe<Job>("stock", fail,
                                    {.breaker = {.consecutive_failures = 1, .cooldown = std::chrono::milliseconds(0)}});
    auto plain = bus.subscribe<Job>("plain", fail);
    bus.publish(Job{1, "first"});
    ASSERT_TRUE(bus.flush());
    pricing.unsubscribe();          // before it gets the probe
    bus.publish(Job{2, "second"});  // stock's probe; shipping's waits for its breaker
    ASSERT_TRUE(bus.flush());
  }
  const Outcome j = run_crier(dir, {"status", store_path, "--json"});
  ASSERT_EQ(j.code, 0) << j.err;
  std::map<std::string, nlohmann::json> breaker;
  const auto status = nlohmann::json::parse(j.out);
  for (const auto& s : status["subscribers"])
    if (s["event_type"] == job) breaker[s["subscriber"].get<std::string>()] = s["breaker"];
  ASSERT_EQ(breaker.size(), 4u) << j.out;
  EXPECT_EQ(breaker["shipping"]["state"], "open");
  EXPECT_EQ(breaker["shipping"]["reason"], "circuit opened after 1 consecutive failures");
  EXPECT_EQ(breaker["pricing"]["state"], "half-open");
  EXPECT_EQ(breaker["stock"]["state"], "closed");
  EXPECT_EQ(breaker["stock"]["reason"], "probe succeeded: circuit closed");
  EXPECT_TRUE(breaker["plain"].is_null());

  const Outcome table = run_crier(dir, {"status", store_path});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("BREAKER"), std::string::npos) << table.out;
  std::istringstream lines(table.out);
  int shipping_rows = 0;
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("shipping ", 0) == 0 && line.find(job) != std::string::npos) {
      ++shipping_rows;
      EXPECT_NE(line.find(" open "), std::string::npos) << line;
    }
  EXPECT_EQ(shipping_rows, 1) << table.out;
}
