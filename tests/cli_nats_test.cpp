// The crier command-line tool on a nats:// bus made by a program with settings of its own
// (memory storage, a maximum age and size, a subject prefix that is not the stream's name):
// the tools adopt the streams as they are, read the prefix from them, and never make a stream. 20 jobs; "billing"
// dead-lettered the 4 whose n is a multiple of 5; "audit" read nothing.
#include <gtest/gtest.h>

#include <crier/nats.hpp>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_process.hpp"
#include "nats_server.hpp"

using namespace test;

namespace {

class CliNatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    crier::nats::Options o;
    o.servers = {server.url()};
    o.stream = "SHOP";
    o.subject_prefix = "market";
    o.storage = crier::nats::Storage::memory;
    o.max_age = std::chrono::hours(1);
    o.max_bytes = 64 << 20;
    crier::Bus bus{crier::nats::connect(o)};
    fill_like_the_demo(bus);
  }

  NatsServer server;
  ScratchDir dir;
  const std::string bus = server.url() + "/SHOP";  // no ?prefix=market: read from the stream
  const std::string job = std::string(crier::event_type_v<Job>);
};

TEST_F(CliNatsTest, StatusTailAndDeadLettersWorkOnABusMadeWithItsOwnSettings) {
  Outcome r = run_crier(dir, {"status", bus, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto status = nlohmann::json::parse(r.out);  // kept: read below
  auto by_name = subscribers_by_name(status);
  ASSERT_EQ(by_name.size(), 2u) << r.out;
  EXPECT_EQ(by_name.at("billing")["lag"], 0);
  EXPECT_EQ(by_name.at("billing")["dead_letters"], 4);
  EXPECT_EQ(by_name.at("audit")["lag"], 20);

  r = run_crier(dir, {"tail", bus, "--type", job, "--limit", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto tailed = lines(r.out);
  ASSERT_EQ(tailed.size(), 3u) << r.out;
  EXPECT_EQ(nlohmann::json::parse(tailed.back())["data"]["n"], 20);

  r = run_crier(dir, {"dlq", "list", bus, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(r.out).size(), 4u) << r.out;

  // A tool that writes takes the bus's settings too: the event lands among the others.
  r = run_crier(dir, {"publish", bus, "--type", job, "--data", R"({"n":21,"note":"from the tool"})"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_crier(dir, {"tail", bus, "--type", job, "--limit", "1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["data"]["n"], 21) << r.out;
}

// A copy of a bus through a pipe (crier tail --json | crier publish -), published a batch at
// a time: every line, in order, up to a bad one, which is named with what came before it.
TEST_F(CliNatsTest, CloudEventLinesFromAPipeArePublishedInOrderUpToABadOne) {
  std::string input;
  for (int n = 1; n <= 600; ++n) {
    crier::Envelope e =
        crier::new_envelope(job, R"({"n":)" + std::to_string(100 + n) + R"(,"note":"piped"})", "application/json");
    input += (n == 500 ? std::string(R"({"specversion":"1.0","id":"x"})") : e.to_json()) + "\n";
  }
  Outcome r = run_crier(dir, {"publish", bus, "-"}, input);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("stdin line 500: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(499 events before it published)"), std::string::npos) << r.err;
  r = run_crier(dir, {"tail", bus, "--type", job, "--limit", "0", "--from", "beginning", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<int> ns;
  for (const auto& line : lines(r.out)) ns.push_back(nlohmann::json::parse(line)["data"]["n"].get<int>());
  ASSERT_EQ(ns.size(), 20u + 499u);
  for (int i = 0; i < 499; ++i) EXPECT_EQ(ns[20 + i], 101 + i) << i;
}

TEST_F(CliNatsTest, AStreamThatIsNotThereIsSaidWithTheBusesThereAndNotMade) {
  const std::string nope = server.url() + "/NOPE";
  for (const auto& args : std::vector<std::vector<std::string>>{{"publish", nope, "--type", job, "--data", "{}"},
                                                                {"status", nope}}) {  // publish made nothing for status
    const Outcome r = run_crier(dir, args);
    EXPECT_EQ(r.code, 3) << args[0];  // not found, as a store file that is not there
    EXPECT_NE(r.err.find("stream NOPE does not exist, and the tools make none"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("; crier buses there: SHOP\n"), std::string::npos) << r.err;  // not SHOP_DLQ
  }
}

}  // namespace

// crier tail --follow and crier status --watch outlive a restart of their server: the outage
// is said once on stderr, and once the server is back tail prints the events published since,
// each once, and status looks again.
TEST(CliNatsFollow, TailAndStatusWatchOutliveARestartOfTheirServer) {
  NatsServer server;
  ScratchDir dir, watch_dir;  // a RunningCrier's stderr file is per directory
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "FOLLOW";
  crier::Bus{crier::nats::connect(o)}.publish(Job{1, "before"});
  const std::string bus = server.url() + "/FOLLOW";
  RunningCrier tail(dir, {"tail", bus, "--follow", "--json"});
  // A look a second: its output, which no one reads, stays far below what the pipe holds.
  RunningCrier watch(watch_dir, {"status", bus, "--watch", "--every", "1"});
  auto l = tail.line();
  ASSERT_TRUE(l) << tail.err();
  EXPECT_EQ(nlohmann::json::parse(*l)["data"]["n"], 1);
  // Both connected and looking (a tool that cannot reach its bus at the start ends).
  for (l = watch.line(); l && l->rfind("SUBSCRIBER", 0) != 0; l = watch.line()) {
  }
  ASSERT_TRUE(l) << watch.err();

  server.kill();
  ASSERT_TRUE(tail.wait_for_err("still following", std::chrono::seconds(30))) << tail.err();
  ASSERT_TRUE(watch.wait_for_err("still watching", std::chrono::seconds(30))) << watch.err();
  server.start();
  crier::Bus{crier::nats::connect(o)}.publish(Job{2, "after"});
  l = tail.line();
  ASSERT_TRUE(l) << tail.err();
  EXPECT_EQ(nlohmann::json::parse(*l)["data"]["n"], 2) << "the event after the restart, and nothing twice";
  EXPECT_TRUE(tail.wait_for_err("answers again", std::chrono::seconds(30))) << tail.err();
  EXPECT_TRUE(watch.wait_for_err("answers again", std::chrono::seconds(30))) << watch.err();
  for (RunningCrier* tool : {&tail, &watch}) {
    const std::string said = tool->err();
    EXPECT_EQ(said.find("still "), said.rfind("still ")) << "the outage said once: " << said;
    tool->signal(SIGINT);
    EXPECT_EQ(tool->wait(), 0) << tool->err();
  }
}
