#include "ping.hpp"

namespace pinglib {

crier::Subscription subscribe_pings(crier::Bus& bus, Tally& tally, crier::DeliveryMode mode) {
  crier::SubscribeOptions options;
  options.mode = mode;
  return bus.subscribe<Ping>(
      "ping-counter",
      [&tally](const Ping& p, crier::Delivery& d) {
        if (tally.count.load() == 0) tally.type = std::string(d.type());
        tally.sum += p.n;
        ++tally.count;
      },
      options);
}

std::uint32_t ping_index_in_subscriber() { return crier::detail::event_index<Ping>(); }

}  // namespace pinglib
