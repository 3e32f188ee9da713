// Event types and helpers shared by the tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <crier/crier.hpp>

namespace test {

struct Ping {
  int n = 0;
};
CRIER_EVENT(Ping, "com.example.test.ping");

struct Pong {
  int n = 0;
};
CRIER_EVENT(Pong, "com.example.test.pong");

struct Order {
  std::string id;
  int quantity = 0;
};
CRIER_EVENT(Order, "com.example.test.order");
inline void to_json(nlohmann::json& j, const Order& o) { j = {{"id", o.id}, {"quantity", o.quantity}}; }
inline void from_json(const nlohmann::json& j, Order& o) {
  j.at("id").get_to(o.id);
  j.at("quantity").get_to(o.quantity);
}

/// Collects handler failures reported to BusOptions::on_error.
struct Failures {
  std::mutex mu;
  std::vector<std::string> messages;
  std::vector<std::string> subscribers;
  crier::BusOptions options() {
    crier::BusOptions o;
    o.on_error = [this](const crier::HandlerFailure& f) {
      std::lock_guard lock(mu);
      messages.emplace_back(f.message);
      subscribers.emplace_back(f.subscriber);
    };
    return o;
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return messages.size();
  }
};

/// Waits until a counter reaches a value (condition variable, no sleeps).
class Counter {
 public:
  void add(int k = 1) {
    {
      std::lock_guard lock(mu_);
      n_ += k;
    }
    cv_.notify_all();
  }
  void wait_for(int target) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return n_ >= target; });
  }
  int value() {
    std::lock_guard lock(mu_);
    return n_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0;
};

inline const crier::SubscribeOptions kInline{.mode = crier::DeliveryMode::Inline};

inline crier::SubscriberStats stats_of(const crier::Bus& bus, std::string_view name) {
  for (auto& s : bus.stats())
    if (s.name == name) return s;
  return {};
}

}  // namespace test
