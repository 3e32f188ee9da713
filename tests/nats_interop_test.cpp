// CloudEvents over NATS with a client nobody at crier wrote: a Node.js program using the npm
// `nats` client and the official CloudEvents SDK (tests/interop/interop.js) reads what crier
// published, in binary and structured mode, and publishes binary, structured and plain
// events that a typed crier subscriber then receives with their attributes.
#include <gtest/gtest.h>

#include <crier/nats.hpp>

#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>

#include "durable_events.hpp"
#include "nats_server.hpp"
#include "test_events.hpp"

using namespace test;
using namespace std::chrono_literals;

namespace {

std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) throw std::runtime_error("`" + command + "` failed (" + std::to_string(status) + "):\n" + out);
  return out;
}

TEST(NatsInterop, ANodeClientReadsAndWritesCloudEventsWithCrier) {
  const std::filesystem::path modules = CRIER_INTEROP_MODULES;
  if (!std::filesystem::exists(modules / "nats") || !std::filesystem::exists(modules / "cloudevents"))
    GTEST_SKIP() << "the npm packages are not installed in " << modules
                 << " (npm could not reach its registry when scripts/test ran): interop not tested";
  NatsServer server;
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "INTEROP";
  o.subject_prefix = "interop";
  auto structured_options = o;
  structured_options.content_mode = crier::nats::ContentMode::structured;

  crier::Bus binary{crier::nats::connect(o)};
  crier::Bus structured{crier::nats::connect(structured_options)};
  crier::Attributes a;
  a.subject = "order 7 \"quoted\" caf\xC3\xA9";
  a.partition_key = "customer-3";
  binary.publish(Job{1, "binary from crier"}, a);
  structured.publish(Job{2, "structured from crier"}, a);

  std::mutex mu;
  std::map<int, crier::Envelope> got;
  Counter arrived;
  auto sub = binary.subscribe<Job>("from-node", [&](const Job& j, crier::Delivery& d) {
    {
      std::lock_guard lock(mu);
      got[j.n] = d.envelope();
    }
    arrived.add();
  });

  const std::string out = run("NODE_PATH='" + modules.string() + "' node '" CRIER_INTEROP_SCRIPT "' " + server.url() +
                              " INTEROP interop 2>&1");
  const auto report = nlohmann::json::parse(out.substr(out.rfind("{\"node\"")));
  std::printf("[ figure ] interop with Node.js %s\n", report["node"].get<std::string>().c_str());
  const auto& read = report["read"];
  ASSERT_EQ(read.size(), 2u) << out;
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& e = read[i];
    EXPECT_EQ(e["mode"], i == 0 ? "binary" : "structured");
    EXPECT_EQ(e["type"], "com.example.test.job");
    EXPECT_EQ(e["source"], binary.source());
    EXPECT_EQ(e["subject"], a.subject);
    EXPECT_EQ(e["partitionkey"], "customer-3");
    EXPECT_EQ(e["datacontenttype"], "application/json");
    EXPECT_EQ(e["data"]["n"], static_cast<int>(i + 1));
    EXPECT_FALSE(e["id"].get<std::string>().empty());
  }

  // 1 and 2 (crier's own) and the three from Node.
  arrived.wait_for(5);
  ASSERT_TRUE(binary.flush(30s));
  std::lock_guard lock(mu);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[101].id, "js-binary-1");
  EXPECT_EQ(got[101].source, "/node/interop");
  EXPECT_EQ(got[101].subject, "from node");
  EXPECT_EQ(got[101].extensions["partitionkey"], "k-js");
  EXPECT_EQ(got[102].id, "js-structured-2");
  EXPECT_EQ(got[102].extensions["partitionkey"], "k-js");
  EXPECT_EQ(got[103].id, "js-plain-3");  // a plain message: its id from Nats-Msg-Id
  EXPECT_EQ(got[103].type, "com.example.test.job");
  EXPECT_EQ(got[103].source, "nats://INTEROP");
}

}  // namespace
