// The README's quick start (memory bus), compiled by compile_ratio.sh beside std_only.cpp.
#include <crier/crier.hpp>

#include <cstdio>
#include <string>

struct OrderPlaced {
  std::string order_id;
  int quantity = 0;
};
CRIER_EVENT(OrderPlaced, "com.example.order.placed");

int main() {
  crier::Bus bus;

  auto inventory = bus.subscribe<OrderPlaced>(
      "inventory", [](const OrderPlaced& o) { std::printf("reserve %d x %s\n", o.quantity, o.order_id.c_str()); });
  auto audit = bus.subscribe<OrderPlaced>("audit", [](const OrderPlaced& o, crier::Delivery& d) {
    std::printf("audit %s %s\n", d.id().to_string().c_str(), o.order_id.c_str());
  });

  bus.publish(OrderPlaced{"o-1", 2});
  bus.drain();
}
