#include <gtest/gtest.h>

#include <crier/crier.hpp>

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
