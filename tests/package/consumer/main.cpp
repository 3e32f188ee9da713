// Uses the installed crier through its public header only.
#include <crier/crier.hpp>

#include <cstdio>

namespace shop {
struct Ping {
  int n = 0;
};
CRIER_EVENT(Ping, "com.example.consumer.ping");
}  // namespace shop

int main() {
  crier::Bus bus;
  int seen = 0;
  auto sub = bus.subscribe<shop::Ping>("counter", [&](const shop::Ping& p) { seen += p.n; },
                                       {.mode = crier::DeliveryMode::Inline});
  bus.publish(shop::Ping{2});
  bus.publish(shop::Ping{3});
  std::printf("seen %d\n", seen);
  return seen == 5 ? 0 : 1;
}
