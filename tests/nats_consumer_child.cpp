// The consumer process the NATS kill test SIGKILLs with events in hand.
// `nats_consumer_child URL STREAM PREFIX ACK_WAIT_MS`: subscribes "billing" to test::Job and,
// in its first handler call, prints "holding <n>" and never returns; the bus meanwhile holds
// every other event it fetched (renewing each one's AckWait) until the kill.
#include <crier/nats.hpp>

#include <cstdio>
#include <cstdlib>
#include <future>

#include "durable_events.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s URL STREAM PREFIX ACK_WAIT_MS\n", argv[0]);
    return 2;
  }
  crier::nats::Options o;
  o.servers = {argv[1]};
  o.stream = argv[2];
  o.subject_prefix = argv[3];
  o.ack_wait = std::chrono::milliseconds(std::atoll(argv[4]));
  crier::Bus bus{crier::nats::connect(o)};
  std::promise<void> never;  // kept, never set
  const std::shared_future<void> forever = never.get_future().share();
  auto sub = bus.subscribe<test::Job>("billing", [&](const test::Job& j) {
    std::printf("holding %d\n", j.n);
    std::fflush(stdout);
    forever.wait();  // until SIGKILL
  });
  forever.wait();
}
