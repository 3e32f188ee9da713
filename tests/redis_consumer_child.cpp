// The consumer process the Redis kill test SIGKILLs with events in hand.
// `redis_consumer_child URL PREFIX VISIBILITY_MS`: subscribes "billing" to test::Job and, in
// its first handler call, prints "holding <n>" and never returns; the bus meanwhile holds
// every other event it read (renewing each one's idle time) until the kill.
#include <crier/redis.hpp>

#include <cstdio>
#include <cstdlib>
#include <future>

#include "durable_events.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s URL PREFIX VISIBILITY_MS\n", argv[0]);
    return 2;
  }
  crier::redis::Options o;
  o.url = argv[1];
  o.prefix = argv[2];
  o.visibility_timeout = std::chrono::milliseconds(std::atoll(argv[3]));
  crier::Bus bus{crier::redis::connect(o)};
  std::promise<void> never;  // kept, never set
  const std::shared_future<void> forever = never.get_future().share();
  auto sub = bus.subscribe<test::Job>("billing", [&](const test::Job& j) {
    std::printf("holding %d\n", j.n);
    std::fflush(stdout);
    forever.wait();  // until SIGKILL
  });
  forever.wait();
}
