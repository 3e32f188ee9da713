// NATS consumers facing records that another client wrote into the bus's streams.
#include <gtest/gtest.h>

#include <nats/nats.h>

#include <crier/nats.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "durable_events.hpp"
#include "nats_server.hpp"

using namespace test;

// An ordered subscriber's turn is a JSON record in the attempts stream, where any client may
// write. A record that does not read (an owner that is not a string, an end that is not a
// number) holds no turn: the subscriber takes it and goes on, instead of failing every fetch.
TEST(NatsConsumer, AnUnreadableTurnRecordHoldsNoTurn) {
  NatsServer server;
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "TURNS";
  o.subject_prefix = "turns";
  std::mutex mu;
  std::condition_variable cv;
  int handled = 0;
  std::string failures;
  crier::BusOptions bus_options;
  bus_options.on_error = [&](const crier::Report& r) {
    std::lock_guard lock(mu);
    failures += std::string(r.message) + "\n";
  };
  crier::Bus bus{crier::nats::connect(o), bus_options};

  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, server.url().c_str()), NATS_OK);
  // The turn of subscriber "keyed" of com.example.test.job (its durable name escapes '.').
  const std::string subject = "turns-attempts.keyed_scom_dexample_dtest_djob.turn";
  const char* record = R"({"owner":5,"until_ms":"forever"})";
  natsMsg* ack = nullptr;
  ASSERT_EQ(natsConnection_RequestString(&ack, nc, subject.c_str(), record, 5000), NATS_OK);
  EXPECT_NE(std::string(natsMsg_GetData(ack)).find("\"seq\""), std::string::npos) << natsMsg_GetData(ack);
  natsMsg_Destroy(ack);
  natsConnection_Destroy(nc);

  crier::SubscribeOptions ordered;
  ordered.ordering = crier::Ordering::ordered;
  auto sub = bus.subscribe<Job>(
      "keyed",
      [&](const Job&) {
        std::lock_guard lock(mu);
        ++handled;
        cv.notify_all();
      },
      ordered);
  bus.publish(Job{1, "after an unreadable turn record"});
  std::unique_lock lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return handled == 1; })) << "not handled; reported:\n"
                                                                                         << failures;
}
