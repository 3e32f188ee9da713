// The NATS transport's link in the bus's error hook and metrics: a server that goes away and
// comes back is reported both ways, counted, and shown in the Prometheus exposition; one that
// cannot be reached is an error in words.
#include <gtest/gtest.h>

#include <signal.h>

#include <crier/nats.hpp>

#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "durable_events.hpp"
#include "nats_server.hpp"

using namespace test;

TEST(NatsConnection, ALostAndRegainedServerIsReportedAndCounted) {
  NatsServer server;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<crier::Report::Kind> kinds;
  std::string last_message;
  crier::BusOptions bus_options;
  bus_options.on_error = [&](const crier::Report& r) {
    std::lock_guard lock(mu);
    kinds.push_back(r.kind);
    last_message = std::string(r.message);
    cv.notify_all();
  };
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "LINK";
  o.subject_prefix = "link";
  crier::Bus bus{crier::nats::connect(o), bus_options};
  auto wait_for = [&](std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return kinds.size() >= n; });
  };

  auto m = bus.metrics();
  EXPECT_EQ(m.transport, "nats");
  EXPECT_TRUE(m.transport_health.connected);
  EXPECT_EQ(m.transport_health.server, server.url());
  EXPECT_NE(crier::to_prometheus(m).find("crier_transport_connected{transport=\"nats\"} 1\n"), std::string::npos);

  server.stop(SIGKILL);
  ASSERT_TRUE(wait_for(1)) << "no report of the lost connection";
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(kinds.front(), crier::Report::Kind::connection_lost);
    EXPECT_NE(last_message.find("connection to " + server.url() + " lost"), std::string::npos) << last_message;
  }
  m = bus.metrics();
  EXPECT_FALSE(m.transport_health.connected);
  EXPECT_EQ(m.transport_health.disconnects, 1u);
  EXPECT_NE(crier::to_prometheus(m).find("crier_transport_connected{transport=\"nats\"} 0\n"), std::string::npos);

  server.start();
  ASSERT_TRUE(wait_for(2)) << "no report of the connection regained";
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(kinds.at(1), crier::Report::Kind::connection_restored);
  }
  m = bus.metrics();
  EXPECT_TRUE(m.transport_health.connected);
  EXPECT_EQ(m.transport_health.reconnects, 1u);
  const std::string text = crier::to_prometheus(m);
  EXPECT_NE(text.find("crier_transport_reconnects_total{transport=\"nats\"} 1\n"), std::string::npos) << text;
  bus.publish(Job{1, "after the server came back"});  // the link works again
}

TEST(NatsConnection, AnEmbeddedBusHasNoTransportMetrics) {
  crier::Bus bus;
  const auto m = bus.metrics();
  EXPECT_TRUE(m.transport.empty());
  EXPECT_EQ(crier::to_prometheus(m).find("crier_transport_"), std::string::npos);
}

// A server that cannot be reached, or that takes the connection and never answers as NATS
// does (a stuck one, another protocol's), is an error that says so and where, not cnats's
// source line.
TEST(NatsConnection, AServerThatIsDownOrSilentIsAClearErrorThatSaysWhere) {
  const RefusingPort nothing;
  const SilentPort silent;
  crier::nats::Options o;
  o.publish_timeout = std::chrono::milliseconds(300);
  for (const auto& [port, says] : {std::pair{nothing.port(), "nothing answers there (tried for 300 ms)"},
                                   std::pair{silent.port(), "no NATS server answered within 2000 ms"}}) {
    o.servers = {"nats://127.0.0.1:" + std::to_string(port)};
    try {
      (void)crier::nats::connect(o);
      ADD_FAILURE() << "connected to " << o.servers[0];
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      EXPECT_NE(std::string(e.what()).find("cannot connect to " + o.servers[0] + ": " + says), std::string::npos)
          << e.what();
    }
  }
}
