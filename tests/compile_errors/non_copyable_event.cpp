// An event type that cannot be copied into queues.
#include <crier/crier.hpp>

#include <memory>

namespace shop {
struct Owned {
  std::unique_ptr<int> payload;
};
CRIER_EVENT(Owned, "com.example.shop.owned");
}  // namespace shop

int main() {
  crier::Bus bus;
  auto s = bus.subscribe<shop::Owned>("s", [](const shop::Owned&) {});
}
