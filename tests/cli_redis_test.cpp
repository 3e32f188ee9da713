// The crier command-line tool on a redis:// bus: the same store as the SQLite tests build
// (20 jobs; "billing" dead-lettered the 4 whose n is a multiple of 5; "audit" read nothing),
// on a real redis-server the test starts; status, tail, dlq and replay read and repair it.
#include <gtest/gtest.h>

#include <crier/redis.hpp>

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_process.hpp"
#include "redis_server.hpp"

using namespace test;

namespace {

class CliRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    crier::redis::Options o;
    o.url = server.url();
    o.prefix = "shop";
    crier::Bus bus{crier::redis::connect(o)};
    fill_like_the_demo(bus);
  }

  RedisServer server;
  ScratchDir dir;
  const std::string url = server.url() + "?prefix=shop";
  const std::string job = std::string(crier::event_type_v<Job>);
};

TEST_F(CliRedisTest, StatusTailAndDeadLettersWorkOnARedisBus) {
  Outcome r = run_crier(dir, {"status", url, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto status = nlohmann::json::parse(r.out);  // kept: read below
  auto by_name = subscribers_by_name(status);
  EXPECT_EQ(by_name.at("billing")["lag"], 0);
  EXPECT_EQ(by_name.at("billing")["dead_letters"], 4);
  EXPECT_EQ(by_name.at("audit")["lag"], 20);
  EXPECT_TRUE(by_name.at("billing")["idle_ms"].is_number()) << by_name.at("billing");

  r = run_crier(dir, {"tail", url, "--type", job, "--limit", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto tailed = lines(r.out);
  ASSERT_EQ(tailed.size(), 3u) << r.out;
  EXPECT_EQ(nlohmann::json::parse(tailed.back())["data"]["n"], 20);  // the newest three, oldest first

  r = run_crier(dir, {"dlq", "list", url, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto letters = lines(r.out);
  ASSERT_EQ(letters.size(), 4u) << r.out;
  const auto first = nlohmann::json::parse(letters.front());
  EXPECT_EQ(first["subscriber"], "billing");
  EXPECT_EQ(first["last_error"], "job 5 has no price");
  const std::string id = std::to_string(first["id"].get<std::uint64_t>());
  r = run_crier(dir, {"dlq", "redrive", url, "--id", id, "--yes"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "redrove 1 dead letter\n");
  r = run_crier(dir, {"dlq", "purge", url, "--subscriber", "billing", "--all", "--yes"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "purged 3 dead letters\n");
  EXPECT_EQ(run_crier(dir, {"dlq", "list", url, "--json"}).out, "");

  // The redriven letter waits for billing alone; audit is moved past everything.
  r = run_crier(dir, {"replay", url, "--subscriber", "audit", "--type", job, "--to", "end", "--yes"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto after = nlohmann::json::parse(run_crier(dir, {"status", url, "--json"}).out);
  by_name = subscribers_by_name(after);
  EXPECT_EQ(by_name.at("billing")["lag"], 1);
  EXPECT_EQ(by_name.at("billing")["dead_letters"], 0);
  EXPECT_EQ(by_name.at("audit")["lag"], 0);
}

// A prefix where nothing was published or subscribed is no bus: the tools say so, name the
// prefixes of the buses that are there, and make nothing (as for a NATS stream or a store file).
TEST_F(CliRedisTest, APrefixWithoutABusIsSaidWithThePrefixesOfThoseThere) {
  for (const std::string& bus : {server.url(), server.url() + "?prefix=shops"}) {
    const Outcome r = run_crier(dir, {"status", bus});
    EXPECT_EQ(r.code, 3);  // not found, as a store file that is not there
    EXPECT_NE(r.err.find("no crier bus with prefix"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("buses there have prefix 'shop' (name one with ?prefix=)"), std::string::npos) << r.err;
  }
  Outcome r = run_crier(dir, {"publish", server.url() + "?prefix=shops", "--type", job, "--data", "{}"});
  EXPECT_EQ(r.code, 3);
  r = run_crier(dir, {"tail", url, "--limit", "1"});  // the bus itself is there
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(CliRedisTest, AServerThatIsNotThereIsAClearError) {
  const RefusingPort nothing;
  const Outcome r = run_crier(dir, {"status", "redis://127.0.0.1:" + std::to_string(nothing.port())});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("(tried for "), std::string::npos) << r.err;
}

}  // namespace
