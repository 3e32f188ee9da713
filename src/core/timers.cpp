#include "timers.hpp"

#include "common/thread_name.hpp"

#include <algorithm>

namespace crier::detail {

TimerService::TimerService(Clock& clock) : clock_(clock) {
  thread_ = std::thread([this] {
    name_this_thread("crier-timer");
    loop();
  });
  clock_.add_listener(this);  // after thread_ is set: clock_advanced() reads it
}

TimerService::~TimerService() { stop(); }

void TimerService::at(Clock::time_point due, std::function<void()> fn) {
  {
    MutexLock lock(mu_);
    if (stop_) return;
    heap_.push_back(Timer{due, next_seq_++, std::move(fn)});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }
  cv_.notify_one();
}

void TimerService::halt() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id())
      thread_.detach();
    else
      thread_.join();
  }
}

void TimerService::stop() {
  halt();
  if (listening_.exchange(false))
    clock_.remove_listener(this);  // not under mu_: advance() holds
                                   // the clock's lock, then takes it
  std::vector<Timer> dropped;
  {
    MutexLock lock(mu_);
    dropped.swap(heap_);
  }
  // `dropped` is destroyed here, outside the lock: its callbacks own parked events.
}

void TimerService::clock_advanced() noexcept {
  MutexLock lock(mu_);
  const std::uint64_t mine = ++advances_;
  cv_.notify_one();
  if (std::this_thread::get_id() == thread_.get_id()) return;  // a timer moved the clock
  while (!stop_ && handled_ < mine) handled_cv_.wait(mu_);
}

void TimerService::loop() {
  MutexLock lock(mu_);
  while (!stop_) {
    const std::uint64_t seen = advances_;
    if (!heap_.empty() && clock_.now() >= heap_.front().due) {
      std::pop_heap(heap_.begin(), heap_.end(), Later{});
      Timer timer = std::move(heap_.back());
      heap_.pop_back();
      lock.unlock();
      timer.fn();
      timer.fn = nullptr;  // release what it holds before retaking the lock
      lock.lock();
      continue;
    }
    // Nothing is due: whoever moved the clock may go on.
    if (handled_ != seen) {
      handled_ = seen;
      handled_cv_.notify_all();
    }
    if (heap_.empty() || clock_.manual())
      cv_.wait(mu_);  // woken by a new timer or by ManualClock::advance
    else
      cv_.wait_until(mu_, std::chrono::steady_clock::time_point(heap_.front().due.time_since_epoch()));
  }
  handled_cv_.notify_all();
}

}  // namespace crier::detail
