// CRIER_EVENT written in the global namespace for a type of namespace shop: not seen.
#include <crier/crier.hpp>

namespace shop {
struct Placed {
  int n = 0;
};
}  // namespace shop
CRIER_EVENT(shop::Placed, "com.example.shop.placed");

int main() {
  crier::Bus bus;
  bus.publish(shop::Placed{1});
  auto s = bus.subscribe<shop::Placed>("s", [](const shop::Placed&) {});
}
