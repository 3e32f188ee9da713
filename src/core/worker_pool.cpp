#include "worker_pool.hpp"

#include <algorithm>
#include <chrono>

#include "crier/detail/core.hpp"
#include "crier/detail/reader.hpp"

namespace crier::detail {

namespace {
// Events a run takes from its queue at once: one claim, one counter update, one clock read.
constexpr std::size_t kBatch = 256;
// How long a run whose queue ran dry keeps watching it before giving its thread back. A
// publisher that keeps up a steady stream then never pays for a wake-up.
constexpr auto kLinger = std::chrono::microseconds(50);
}  // namespace

void ReadyQueue::push(SubscriberBase* sub) {
  if (size_ == ring_.size()) {
    std::vector<SubscriberBase*> bigger(ring_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) % ring_.size()];
    ring_.swap(bigger);
    head_ = 0;
  }
  ring_[(head_ + size_) % ring_.size()] = sub;
  ++size_;
}

SubscriberBase* ReadyQueue::pop() noexcept {
  SubscriberBase* sub = ring_[head_];
  head_ = (head_ + 1) % ring_.size();
  --size_;
  return sub;
}

WorkerPool::WorkerPool(BusCore& core, unsigned threads) : core_(core) {
  threads_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

WorkerPool::~WorkerPool() { stop_and_join(); }

void WorkerPool::submit(SubscriberBase* sub) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    ready_.push(sub);
    ready_count_.fetch_add(1, std::memory_order_relaxed);
    wake = idle_ > 0;
  }
  if (wake) cv_.notify_one();
}

void WorkerPool::stop_and_join() {
  std::vector<SubscriberBase*> abandoned;
  {
    std::lock_guard lock(mu_);
    if (stop_ && threads_.empty()) return;
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.get_id() == std::this_thread::get_id())
      t.detach();  // the bus is being destroyed from one of its own handlers
    else if (t.joinable())
      t.join();
  }
  threads_.clear();
  {
    std::lock_guard lock(mu_);
    while (!ready_.empty()) abandoned.push_back(ready_.pop());
    ready_count_.store(0, std::memory_order_relaxed);
  }
  for (SubscriberBase* sub : abandoned) {
    sub->runners.fetch_sub(1, std::memory_order_seq_cst);
    core_.release_ref(sub);
  }
}

void WorkerPool::loop() {
  this_thread_reader().worker_of = &core_;
  std::unique_lock lock(mu_);
  for (;;) {
    if (ready_.empty()) {
      if (stop_) break;
      ++idle_;
      cv_.wait(lock, [this] { return stop_ || !ready_.empty(); });
      --idle_;
      continue;
    }
    if (stop_) break;
    SubscriberBase* sub = ready_.pop();
    ready_count_.fetch_sub(1, std::memory_order_relaxed);
    lock.unlock();
    run(sub);
    lock.lock();
  }
  this_thread_reader().worker_of = nullptr;
}

void WorkerPool::run(SubscriberBase* sub) {
  for (;;) {
    if (core_.stopped()) break;  // runs under way end after their current batch
    std::size_t n = 0;
    {
      ReadSection section;
      section.enter(sub);
      if (sub->active.load(std::memory_order_relaxed)) n = sub->run_batch(kBatch);
    }
    if (n == kBatch) {
      if (ready_count_.load(std::memory_order_relaxed) == 0) continue;
      submit(sub);  // others are waiting: go to the back, keeping our runner count
      return;
    }
    if (n > 0) {
      // A short batch means we caught up with the publishers: reading the slot they are
      // writing would bounce its cache line between the cores for every event. Give them
      // a moment to fill whole lines.
      if (n < kBatch / 4)
        for (int i = 0; i < 64; ++i) __builtin_ia32_pause();
      continue;
    }
    // The queue looks empty (or the breaker holds it): linger briefly while nobody else needs
    // this thread. Each look pulls the publishers' cache lines over, so look less often the
    // longer it stays empty.
    if (sub->active.load(std::memory_order_relaxed) && sub->breaker_admits_runs() &&
        ready_count_.load(std::memory_order_relaxed) == 0) {
      const auto until = std::chrono::steady_clock::now() + kLinger;
      bool more = false;
      for (unsigned pauses = 16;; pauses = std::min(pauses * 2, 512u)) {
        for (unsigned i = 0; i < pauses; ++i) __builtin_ia32_pause();
        if (sub->runnable() != 0 || !sub->breaker_admits_runs()) {
          more = sub->breaker_admits_runs();
          break;
        }
        if (std::chrono::steady_clock::now() >= until || ready_count_.load(std::memory_order_relaxed) != 0) break;
      }
      if (more) continue;
    }
    break;
  }
  core_.run_finished(*sub);
}

}  // namespace crier::detail
