// NATS consumers facing records that another client wrote into the bus's streams.
#include <gtest/gtest.h>

#include <nats/nats.h>

#include <crier/nats.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

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

// An event leaves room in what the server takes (max_payload, 1 MiB here) for the headers its
// dead letter adds: a larger one is refused at publish, saying why, and nothing of its batch
// is stored.
TEST(NatsPublish, AnEventWithoutRoomForItsDeadLetterIsRefusedAndNothingOfItsBatchStored) {
  NatsServer server;
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "LARGE";
  o.subject_prefix = "large";
  auto transport = crier::nats::connect(o);
  crier::Bus bus{transport};
  try {
    bus.publish_batch(std::vector<Job>{Job{1, "small"}, Job{2, std::string(1'046'000, 'x')}});
    FAIL() << "an event too large for its dead letter was published";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("this server takes at most 1048576 (its max_payload)"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(transport->inspector().browse({.event_type = "com.example.test.job"}).empty());
  bus.publish(Job{3, std::string(1'040'000, 'x')});  // room left for its dead letter
  EXPECT_EQ(transport->inspector().browse({.event_type = "com.example.test.job"}).size(), 1u);
}

// A message another client published, too large for the dead letter crier would make of it:
// the failure is reported, and the event stays in the stream and comes back after a pause
// (before, it was redelivered at once, its handler run over and over, and nothing said why).
TEST(NatsConsumer, ADeadLetterTooLargeToStoreIsReportedAndItsEventComesBackAfterAPause) {
  NatsServer server;
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "FOREIGN";
  o.subject_prefix = "foreign";
  UnstoredLetters unstored;
  crier::Bus bus{crier::nats::connect(o), unstored.options()};
  auto sub = unstored.give_up_on_jobs(bus);

  natsConnection* nc = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, server.url().c_str()), NATS_OK);
  const std::string data = R"({"n":1,"note":")" + std::string(1'048'500, 'x') + R"("})";
  natsMsg* ack = nullptr;
  ASSERT_EQ(natsConnection_Request(&ack, nc, "foreign.com.example.test.job", data.data(), static_cast<int>(data.size()),
                                   5000),
            NATS_OK);
  natsMsg_Destroy(ack);
  natsConnection_Destroy(nc);

  ASSERT_TRUE(unstored.wait_for(2, std::chrono::seconds(60)))
      << "dead-lettering that failed was not reported; handler calls: " << unstored.calls();
  EXPECT_NE(unstored.last().find("cannot dead-letter event"), std::string::npos) << unstored.last();
  EXPECT_NE(unstored.last().find("max_payload"), std::string::npos) << unstored.last();
  EXPECT_GE(unstored.pause(), std::chrono::seconds(4)) << "it came back at once";
  EXPECT_EQ(unstored.calls(), 2);
}
