// Event types with a codec, and scratch directories, for tests of transports.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <crier/crier.hpp>
#include <crier/json.hpp>

#include "scratch_dir.hpp"

namespace test {

struct Job {
  int n = 0;
  std::string note;
};
CRIER_EVENT(Job, "com.example.test.job");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Job, n, note)

/// The `n` of each Job a handler was given, in the order given: a handler calls add().
class SeenJobs {
 public:
  void add(const Job& j) {
    {
      std::lock_guard lock(mu_);
      ns_.push_back(j.n);
    }
    cv_.notify_all();
  }
  /// Blocks until at least `count` were seen.
  void wait_for(std::size_t count) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ns_.size() >= count; });
  }
  std::vector<int> values() const {
    std::lock_guard lock(mu_);
    return ns_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> ns_;
};

/// The `n` of each of these Jobs, in their order.
inline std::vector<int> ns_of(const std::vector<crier::StoredEnvelope>& events) {
  std::vector<int> out;
  for (const auto& e : events) out.push_back(crier::Codec<Job>::decode(e.envelope.data).n);
  return out;
}

/// The `n` of every Job `transport` stores, oldest first.
inline std::vector<int> stored_jobs(crier::Transport& transport) {
  return ns_of(transport.inspector().browse({.event_type = "com.example.test.job", .limit = 100000}));
}

/// Three threads publish 200 Jobs each at once, in batches of 50 (n = thread * 1000 + i).
/// What `transport` then stores should be all 600, each thread's in its order: returns what is
/// not so, in words (empty when it is).
inline std::string batches_from_threads_stored_in_order(crier::Bus& bus, crier::Transport& transport) {
  std::vector<std::thread> publishers;
  for (int t = 0; t < 3; ++t)
    publishers.emplace_back([&bus, t] {
      for (int b = 0; b < 4; ++b) {
        std::vector<Job> batch;
        for (int i = 0; i < 50; ++i) batch.push_back({t * 1000 + b * 50 + i, "from a thread"});
        bus.publish_batch(batch);
      }
    });
  for (auto& p : publishers) p.join();
  const std::vector<int> stored = stored_jobs(transport);
  if (stored.size() != 600) return std::to_string(stored.size()) + " stored, not 600";
  for (int t = 0; t < 3; ++t) {
    std::vector<int> mine;
    std::copy_if(stored.begin(), stored.end(), std::back_inserter(mine), [t](int n) { return n / 1000 == t; });
    if (mine.size() != 200) return "thread " + std::to_string(t) + ": " + std::to_string(mine.size()) + " stored";
    if (!std::is_sorted(mine.begin(), mine.end())) return "thread " + std::to_string(t) + ": out of order";
  }
  return {};
}

/// The bus's reports, waited for by kind.
class Reports {
 public:
  crier::BusOptions bus_options() {
    crier::BusOptions o;
    o.on_error = [this](const crier::Report& r) {
      std::lock_guard lock(mu_);
      seen_.emplace_back(r.kind, std::string(r.message));
      cv_.notify_all();
    };
    return o;
  }
  /// The message of the first report of `kind` that contains `text` (waiting up to 30 s);
  /// empty when none came.
  std::string wait_for(crier::Report::Kind kind, std::string_view text = {}) {
    std::unique_lock lock(mu_);
    std::string found;
    cv_.wait_for(lock, std::chrono::seconds(30), [&] {
      for (const auto& [k, m] : seen_)
        if (k == kind && m.find(text) != std::string::npos) {
          found = m;
          return true;
        }
      return false;
    });
    return found;
  }
  /// How many reports of `kind` (that contain `text`) came so far.
  std::size_t count(crier::Report::Kind kind, std::string_view text = {}) {
    std::lock_guard lock(mu_);
    return static_cast<std::size_t>(std::count_if(seen_.begin(), seen_.end(), [&](const auto& r) {
      return r.first == kind && r.second.find(text) != std::string::npos;
    }));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<crier::Report::Kind, std::string>> seen_;
};

/// The dead letters a transport could not store, as the bus reports them (transport_failed):
/// when each report came, and the last one's text; and a subscriber whose letters they are.
class UnstoredLetters {
 public:
  crier::BusOptions options() {
    crier::BusOptions o;
    o.on_error = [this](const crier::Report& r) {
      if (r.kind != crier::Report::Kind::transport_failed) return;
      {
        std::lock_guard lock(mu_);
        times_.push_back(std::chrono::steady_clock::now());
        last_ = r.message;
      }
      cv_.notify_all();
    };
    return o;
  }
  /// Waits up to `timeout` for `n` reports; false if they did not come.
  bool wait_for(std::size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return times_.size() >= n; });
  }
  /// How long after the first report the second came.
  std::chrono::steady_clock::duration pause() {
    std::lock_guard lock(mu_);
    return times_.size() < 2 ? std::chrono::steady_clock::duration::zero() : times_[1] - times_[0];
  }
  std::string last() {
    std::lock_guard lock(mu_);
    return last_;
  }
  /// Subscribes "strict" to Job with a handler that fails each event's one attempt: each is
  /// given up on at once.
  crier::Subscription give_up_on_jobs(crier::Bus& bus) {
    crier::SubscribeOptions once;
    once.retry.max_attempts = 1;
    return bus.subscribe<Job>(
        "strict",
        [this](const Job&) {
          calls_.fetch_add(1);
          throw std::runtime_error("refused");
        },
        once);
  }
  /// How often that handler ran.
  int calls() const { return calls_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::chrono::steady_clock::time_point> times_;
  std::string last_;
  std::atomic<int> calls_{0};
};

}  // namespace test
