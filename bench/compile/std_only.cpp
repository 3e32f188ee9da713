// The baseline of compile_ratio.sh: a program of the quick start's size that includes the
// standard library headers crier's public headers include, and does the same with them: a
// queue drained by a worker thread, and a handler called in place.
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

struct OrderPlaced {
  std::string order_id;
  int quantity = 0;
};

int main() {
  std::map<std::string, std::function<void(const OrderPlaced&)>> inline_subscribers;
  std::vector<OrderPlaced> queue;
  std::mutex mu;
  std::atomic<bool> done{false};

  inline_subscribers["inventory"] = [](const OrderPlaced& o) {
    std::printf("reserve %d x %s\n", o.quantity, o.order_id.c_str());
  };
  std::thread audit([&] {
    done.wait(false);
    std::vector<OrderPlaced> taken;
    {
      std::lock_guard lock(mu);
      taken.swap(queue);
    }
    for (const OrderPlaced& o : taken) std::printf("audit %s\n", o.order_id.c_str());
  });

  OrderPlaced order{"o-1", 2};
  for (auto& [name, handler] : inline_subscribers) handler(order);
  {
    std::lock_guard lock(mu);
    queue.push_back(order);
  }
  done.store(true);
  done.notify_one();
  audit.join();
}
