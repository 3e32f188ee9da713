// Uses the installed crier through its public headers only, compiled with strict warnings:
// designated initialisers of the options, a Delivery handler, a durable bus.
#include <crier/crier.hpp>
#include <crier/sqlite.hpp>

#include <cstdio>

namespace shop {
struct Ping {
  int n = 0;
};
CRIER_EVENT(Ping, "com.example.consumer.ping");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Ping, n)
}  // namespace shop

int main() {
  crier::Bus bus;
  int seen = 0;
  auto sub = bus.subscribe<shop::Ping>("counter", [&](const shop::Ping& p) { seen += p.n; },
                                       {.mode = crier::DeliveryMode::sync});
  auto keyed = bus.subscribe<shop::Ping>("keyed", [](const shop::Ping&, crier::Delivery& d) { (void)d.attempt(); },
                                         {.retry = {.max_attempts = 3}, .ordering = crier::Ordering::ordered});
  bus.publish(shop::Ping{2});
  bus.publish(shop::Ping{3}, crier::Attributes{.partition_key = "k"});
  bus.drain();

  crier::Bus durable{crier::sqlite::open("consumer.db")};
  auto stored = durable.subscribe<shop::Ping>("stored", [](const shop::Ping&) {});
  durable.publish(shop::Ping{1});
  std::printf("seen %d\n", seen);
  return seen == 5 ? 0 : 1;
}
