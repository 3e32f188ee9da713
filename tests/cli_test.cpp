// The crier command-line tool, run as a program against real store files: what it prints
// matches the store, it changes only what it is told to, and bad input (a missing or foreign
// file, a malformed CloudEvent on stdin, an unknown subscriber, an unconfirmed purge) gets an
// error that says what and where, with its documented exit code.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <crier/sqlite.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "durable_events.hpp"

using namespace test;

namespace {

struct Outcome {
  int code = -1;
  std::string out, err;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `crier ARGS...` with `input` on its stdin (not a terminal), stdout and stderr apart.
Outcome run_crier(const ScratchDir& dir, const std::vector<std::string>& args, const std::string& input = "") {
  const std::string in = dir.file("stdin"), out = dir.file("stdout"), err = dir.file("stderr");
  std::ofstream(in, std::ios::binary) << input;
  const pid_t pid = fork();
  if (pid == 0) {
    const int fi = open(in.c_str(), O_RDONLY), fo = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600),
              fe = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    std::vector<char*> argv{const_cast<char*>(CRIER_CLI)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(CRIER_CLI, argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_file(out), read_file(err)};
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// A store as the demo leaves one: 20 jobs; "billing" handled them all but dead-lettered the
// 4 whose n is a multiple of 5; "audit" subscribed once, read nothing since (lag 20).
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = crier::sqlite::open(path);
    crier::Bus bus{store};
    {
      auto audit = bus.subscribe<Job>("audit", [](const Job&) {});
      audit.unsubscribe();
    }
    auto billing = bus.subscribe<Job>("billing", [](const Job& j) {
      if (j.n % 5 == 0) throw crier::PermanentError("job " + std::to_string(j.n) + " has no price");
    });
    for (int i = 1; i <= 20; ++i) bus.publish(Job{i, "job " + std::to_string(i)});
    ASSERT_TRUE(bus.drain(std::chrono::seconds(30)).complete);
  }

  ScratchDir dir;
  const std::string path = dir.file("orders.db");
  const std::string job = std::string(crier::event_type_v<Job>);
};

}  // namespace

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
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& s : status["subscribers"]) by_name[s["subscriber"].get<std::string>()] = s;
  EXPECT_EQ(by_name.at("billing")["lag"], 0);
  EXPECT_EQ(by_name.at("billing")["dead_letters"], 4);
  EXPECT_EQ(by_name.at("audit")["lag"], 20);
  ASSERT_EQ(status["event_types"].size(), 2u);  // the jobs, and the dead-letter announcements
  EXPECT_EQ(read_file(path), before) << "status changed the store file";
  EXPECT_EQ(beside(), files_before) << "status made or removed files beside the store";
}

TEST_F(CliTest, AMissingOrForeignFileIsRefusedAndLeftAlone) {
  const std::string missing = dir.file("nothing.db");
  Outcome r = run_crier(dir, {"status", missing});
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

  r = run_crier(dir, {"status", "redis://127.0.0.1:1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no transport opens redis:// URLs"), std::string::npos) << r.err;
}

TEST_F(CliTest, TailPrintsFiltersAndWritesCloudEvents) {
  Outcome r = run_crier(dir, {"tail", path, "--type", job, "--limit", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto l = lines(r.out);
  ASSERT_EQ(l.size(), 5u) << r.out;
  EXPECT_NE(l.back().find("\"n\":20"), std::string::npos) << "the newest last: " << l.back();

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
  EXPECT_NE(r.err.find("the 1 events before it were published"), std::string::npos) << r.err;
  r = run_crier(dir, {"status", path, "--json"});
  const auto status = nlohmann::json::parse(r.out);
  for (const auto& t : status["event_types"])
    if (t["event_type"] == job) {
      EXPECT_EQ(t["events"], 22);
    }

  r = run_crier(dir, {"publish", path, "--type", job, "--data", "{not json"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--data is not JSON"), std::string::npos) << r.err;
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

  r = run_crier(dir, {"dlq", "redrive", path, "--id", id, "--yes"});
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
  EXPECT_NE(r.err.find("--id ID... or --all"), std::string::npos) << r.err;
  r = run_crier(dir, {"status", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Example: crier status"), std::string::npos) << r.out;
}
