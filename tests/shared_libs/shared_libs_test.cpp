// One event type across shared-library boundaries: published from one library, subscribed in
// another and in the executable, it is the same event type everywhere (event.hpp's promise).
// Both libraries are built with hidden visibility, so nothing of crier's headers is merged
// between them by the dynamic linker: what they share goes through libcrier.
#include <gtest/gtest.h>

#include "ping.hpp"

namespace {

using pinglib::Ping;

TEST(SharedLibraries, AnEventTypeHasOneIndexInEveryLibrary) {
  const std::uint32_t here = crier::detail::event_index<Ping>();
  EXPECT_EQ(pinglib::ping_index_in_publisher(), here);
  EXPECT_EQ(pinglib::ping_index_in_subscriber(), here);
}

void expect_everyone_gets_everything(crier::DeliveryMode mode) {
  crier::Bus bus;
  pinglib::Tally in_library;
  std::atomic<int> in_executable{0};
  auto library_sub = pinglib::subscribe_pings(bus, in_library, mode);
  crier::SubscribeOptions options;
  options.mode = mode;
  auto executable_sub = bus.subscribe<Ping>(
      "executable", [&](const Ping&) { ++in_executable; }, options);

  pinglib::publish_pings(bus, 1, 100);                    // from the publisher library
  for (int i = 101; i <= 150; ++i) bus.publish(Ping{i});  // from the executable
  ASSERT_TRUE(bus.drain().complete);

  EXPECT_EQ(in_library.count.load(), 150);
  EXPECT_EQ(in_library.sum.load(), 150L * 151 / 2);
  EXPECT_EQ(in_library.type, "com.example.shared.ping");
  EXPECT_EQ(in_executable.load(), 150);
  const auto m = bus.metrics();
  ASSERT_EQ(m.event_types.size(), 1u);
  EXPECT_EQ(m.event_types[0].event_type, "com.example.shared.ping");
  EXPECT_EQ(m.event_types[0].published, 150u);
}

TEST(SharedLibraries, PublishedInOneLibraryItReachesSubscribersInAnotherAndInTheExecutableInline) {
  expect_everyone_gets_everything(crier::DeliveryMode::sync);
}

TEST(SharedLibraries, PublishedInOneLibraryItReachesSubscribersInAnotherAndInTheExecutableAsync) {
  expect_everyone_gets_everything(crier::DeliveryMode::async);
}

}  // namespace
