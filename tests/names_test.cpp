#include <gtest/gtest.h>

#include <crier/crier.hpp>
#include <crier/open.hpp>

namespace {

static_assert(crier::is_valid_event_type("com.example.order.placed"));
static_assert(crier::is_valid_event_type("a.b"));
static_assert(crier::is_valid_event_type("Com.Example_1.order-placed"));
static_assert(!crier::is_valid_event_type(""));
static_assert(!crier::is_valid_event_type("orders"));  // one segment
static_assert(!crier::is_valid_event_type("com..example"));
static_assert(!crier::is_valid_event_type(".com.example"));
static_assert(!crier::is_valid_event_type("com.example."));
static_assert(!crier::is_valid_event_type("1com.example"));
static_assert(!crier::is_valid_event_type("com.exa mple"));
static_assert(!crier::is_valid_event_type("com.example/placed"));

static_assert(crier::is_valid_subscriber_name("inventory"));
static_assert(crier::is_valid_subscriber_name("email-2_eu"));
static_assert(!crier::is_valid_subscriber_name(""));
static_assert(!crier::is_valid_subscriber_name("in.ventory"));  // NATS durable names forbid dots
static_assert(!crier::is_valid_subscriber_name("-leading"));
static_assert(!crier::is_valid_subscriber_name("sp ace"));

struct Declared {};
CRIER_EVENT(Declared, "com.example.test.declared");
struct Undeclared {};
static_assert(crier::Event<Declared>);
static_assert(!crier::Event<Undeclared>);
static_assert(crier::event_type_v<Declared> == "com.example.test.declared");

TEST(Names, EventTypeLengthLimit) {
  std::string longest = "a." + std::string(crier::kMaxEventTypeLength - 2, 'b');
  EXPECT_TRUE(crier::is_valid_event_type(longest));
  EXPECT_FALSE(crier::is_valid_event_type(longest + "c"));
}

TEST(Names, SubscriberNameLengthLimit) {
  EXPECT_TRUE(crier::is_valid_subscriber_name(std::string(crier::kMaxSubscriberNameLength, 'x')));
  EXPECT_FALSE(crier::is_valid_subscriber_name(std::string(crier::kMaxSubscriberNameLength + 1, 'x')));
}

namespace a {
struct Same {};
CRIER_EVENT(Same, "com.example.test.same");
}  // namespace a
namespace b {
struct Same {};
CRIER_EVENT(Same, "com.example.test.same");
}  // namespace b

TEST(Names, TwoTypesWithOneNameAreRejected) {
  crier::Bus bus;
  auto s = bus.subscribe<a::Same>("x", [](const a::Same&) {}, {.mode = crier::DeliveryMode::sync});
  try {
    bus.publish(b::Same{});
    FAIL() << "expected type_conflict";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::type_conflict);
    EXPECT_NE(std::string(e.what()).find("com.example.test.same"), std::string::npos) << e.what();
  }
}

}  // namespace

// What errors, reports, tools and the dashboard show of a bus's URL: never its password or token.
TEST(Names, ATargetIsShownWithoutItsPasswordOrToken) {
  EXPECT_EQ(crier::redacted_target("nats://bob:s3cret@10.0.0.1:4222/ORDERS"), "nats://bob:***@10.0.0.1:4222/ORDERS");
  EXPECT_EQ(crier::redacted_target("nats://t0ken@10.0.0.1:4222"), "nats://***@10.0.0.1:4222");
  EXPECT_EQ(crier::redacted_target("redis://crier:p@ss:w0rd@127.0.0.1:6379?prefix=orders"),
            "redis://crier:***@127.0.0.1:6379?prefix=orders");
  EXPECT_EQ(crier::redacted_target("nats://a:1@h1:4222,nats://b:2@h2:4222,h3:4222/ORDERS"),
            "nats://a:***@h1:4222,nats://b:***@h2:4222,h3:4222/ORDERS");
  EXPECT_EQ(crier::redacted_target("nats://a:1@h1:4222,b:2@h2:4222/S"), "nats://a:***@h1:4222,b:***@h2:4222/S");
  // Nothing to hide: unchanged, an '@' after the host included.
  for (const char* plain : {"nats://127.0.0.1:4222/ORDERS", "redis://127.0.0.1:6379?prefix=a@b", "unix:///run/r.sock",
                            "orders@2026,copy.db", ""})
    EXPECT_EQ(crier::redacted_target(plain), plain);
}
