#include "ping.hpp"

namespace pinglib {

void publish_pings(crier::Bus& bus, int from, int count) {
  for (int i = 0; i < count; ++i) bus.publish(Ping{from + i});
}

std::uint32_t ping_index_in_publisher() { return crier::detail::event_index<Ping>(); }

}  // namespace pinglib
