// Event types and helpers shared by the tests.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <crier/crier.hpp>
#include <crier/json.hpp>

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

/// Collects what the bus reports to BusOptions::on_error: handler failures in `messages`
/// and `subscribers`, every report's kind in `kinds`.
struct Failures {
  std::mutex mu;
  std::vector<std::string> messages;
  std::vector<std::string> subscribers;
  std::vector<crier::Report::Kind> kinds;
  std::vector<std::string> all;  // every report's message
  crier::BusOptions options() {
    crier::BusOptions o;
    o.on_error = [this](const crier::Report& r) {
      std::lock_guard lock(mu);
      kinds.push_back(r.kind);
      all.emplace_back(r.message);
      if (r.kind != crier::Report::Kind::handler_failed) return;
      messages.emplace_back(r.message);
      subscribers.emplace_back(r.subscriber);
    };
    return o;
  }
  std::size_t size() {
    std::lock_guard lock(mu);
    return messages.size();
  }
  std::size_t count(crier::Report::Kind k) {
    std::lock_guard lock(mu);
    return static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), k));
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

inline const crier::SubscribeOptions kInline{.mode = crier::DeliveryMode::sync};

/// `attempts` attempts, back to back.
inline crier::RetryPolicy immediate(int attempts) {
  crier::RetryPolicy r;
  r.max_attempts = attempts;
  r.immediate_attempts = attempts;
  return r;
}

inline crier::SubscriberMetrics stats_of(const crier::Bus& bus, std::string_view name, std::string_view type = {}) {
  for (auto& s : bus.metrics().subscribers)
    if (s.name == name && (type.empty() || s.event_type == type)) return s;
  return {};
}

/// How many times `what` occurs in `text`: an error quoting another says "crier: <code>: "
/// once, at its start.
inline std::size_t occurrences(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string_view::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace test
