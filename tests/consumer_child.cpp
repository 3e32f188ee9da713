// The consumer process the kill tests SIGKILL with events in hand (tests/takeover.hpp).
//   consumer_child nats URL STREAM PREFIX ACK_WAIT_MS
//   consumer_child redis URL PREFIX VISIBILITY_MS
// Subscribes "billing" to test::Job and, in its first handler call, prints "holding <n>" and
// never returns; the bus meanwhile holds every other event it read (renewing each one's
// AckWait, or its idle time on Redis) until the kill.
#include <crier/nats.hpp>
#include <crier/redis.hpp>

#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string_view>

#include "durable_events.hpp"

int main(int argc, char** argv) {
  std::shared_ptr<crier::Transport> transport;
  const std::string_view engine = argc > 1 ? argv[1] : "";
  if (engine == "nats" && argc == 6) {
    crier::nats::Options o;
    o.servers = {argv[2]};
    o.stream = argv[3];
    o.subject_prefix = argv[4];
    o.ack_wait = std::chrono::milliseconds(std::atoll(argv[5]));
    transport = crier::nats::connect(o);
  } else if (engine == "redis" && argc == 5) {
    crier::redis::Options o;
    o.url = argv[2];
    o.prefix = argv[3];
    o.visibility_timeout = std::chrono::milliseconds(std::atoll(argv[4]));
    transport = crier::redis::connect(o);
  } else {
    std::fprintf(stderr, "usage: %s nats URL STREAM PREFIX ACK_WAIT_MS | redis URL PREFIX VISIBILITY_MS\n", argv[0]);
    return 2;
  }
  crier::Bus bus{transport};
  std::promise<void> never;  // kept, never set
  const std::shared_future<void> forever = never.get_future().share();
  auto sub = bus.subscribe<test::Job>("billing", [&](const test::Job& j) {
    std::printf("holding %d\n", j.n);
    std::fflush(stdout);
    forever.wait();  // until SIGKILL
  });
  forever.wait();
}
