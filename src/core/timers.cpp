#include "timers.hpp"

#include <algorithm>

namespace crier::detail {

TimerService::TimerService(Clock& clock) : clock_(clock) {
  clock_.add_listener(this);
  thread_ = std::thread([this] { loop(); });
}

TimerService::~TimerService() { stop(); }

void TimerService::at(Clock::time_point due, std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return;
    heap_.push_back(Timer{due, next_seq_++, std::move(fn)});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }
  cv_.notify_one();
}

std::size_t TimerService::pending() const {
  std::lock_guard lock(mu_);
  return heap_.size();
}

void TimerService::stop() {
  std::vector<Timer> dropped;
  {
    std::lock_guard lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    dropped.swap(heap_);
  }
  cv_.notify_one();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id())
      thread_.detach();
    else
      thread_.join();
  }
  clock_.remove_listener(this);
  // `dropped` is destroyed here, outside the lock: its callbacks own parked events.
}

void TimerService::clock_advanced() noexcept {
  { std::lock_guard lock(mu_); }  // a waiter between its check and its wait sees the change
  cv_.notify_one();
}

void TimerService::loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (heap_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const Clock::time_point due = heap_.front().due;
    if (clock_.now() < due) {
      if (clock_.manual())
        cv_.wait(lock);  // woken by ManualClock::advance or a new timer
      else
        cv_.wait_until(lock, std::chrono::steady_clock::time_point(due.time_since_epoch()));
      continue;
    }
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    Timer timer = std::move(heap_.back());
    heap_.pop_back();
    lock.unlock();
    timer.fn();
    timer.fn = nullptr;  // release what it holds before retaking the lock
    lock.lock();
  }
}

}  // namespace crier::detail
