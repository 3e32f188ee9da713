// An event type declared once and used from two shared libraries and the executable that
// loads them (as EnTT's test/lib does for its type ids).
#pragma once

#include <crier/crier.hpp>

#include <atomic>
#include <cstdint>
#include <string>

#if defined(PING_BUILDING_PUBLISHER) || defined(PING_BUILDING_SUBSCRIBER)
#define PING_API __attribute__((visibility("default")))
#else
#define PING_API
#endif

namespace pinglib {

struct Ping {
  int n = 0;
};
CRIER_EVENT(Ping, "com.example.shared.ping");

// libping_publisher
PING_API void publish_pings(crier::Bus& bus, int from, int count);
PING_API std::uint32_t ping_index_in_publisher();

// libping_subscriber: counts Pings and sums their numbers; the Delivery's type name is kept.
struct Tally {
  std::atomic<int> count{0};
  std::atomic<long> sum{0};
  std::string type;  // written by the first delivery only
};
PING_API crier::Subscription subscribe_pings(crier::Bus& bus, Tally& tally, crier::DeliveryMode mode);
PING_API std::uint32_t ping_index_in_subscriber();

}  // namespace pinglib
