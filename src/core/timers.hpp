// One thread per bus that runs short callbacks at given times of the bus's clock: delayed
// retries and breaker cool-downs. A waiting retry is a heap entry, not a thread. With a
// ManualClock, advance() returns only once every timer due by then has run, so tests can
// check what did and did not happen.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/mutex.hpp"
#include "crier/clock.hpp"

namespace crier::detail {

class TimerService final : private Clock::Listener {
 public:
  explicit TimerService(Clock& clock);
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  /// Runs `fn` on the timer thread once the clock reaches `due`. After stop(), drops it.
  void at(Clock::time_point due, std::function<void()> fn);
  /// Stops the thread: no timer runs any more, and those not yet run stay (and keep what they
  /// hold) until stop(). For counting what waits without it moving meanwhile.
  void halt();
  /// Stops the thread; timers not yet run are destroyed without running.
  void stop();

 private:
  struct Timer {
    Clock::time_point due;
    std::uint64_t seq;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Timer& a, const Timer& b) const noexcept {
      return a.due != b.due ? a.due > b.due : a.seq > b.seq;
    }
  };

  void clock_advanced() noexcept override;
  void loop();

  Clock& clock_;
  Mutex mu_;
  CondVar cv_;
  std::vector<Timer> heap_ CRIER_GUARDED_BY(mu_);  // a min-heap on (due, seq)
  std::uint64_t next_seq_ = 0;
  std::uint64_t advances_ = 0;  // manual clock moves seen, and handled by the loop
  std::uint64_t handled_ = 0;
  CondVar handled_cv_;
  bool stop_ = false;
  std::atomic<bool> listening_{true};  // registered with the clock
  std::thread thread_;
};

}  // namespace crier::detail
