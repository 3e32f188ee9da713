// Time, injectable. Retry delays, circuit-breaker cool-downs, handler budgets and dead-letter
// timestamps all read the bus's Clock, so tests drive them with a ManualClock instead of
// sleeping.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "crier/envelope.hpp"
#include "crier/export.hpp"

namespace crier {

/// A source of time. Thread-safe.
class CRIER_EXPORT Clock {
 public:
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;

  /// Told when a manual clock moves, so that whoever waits for a time can look again.
  class Listener {
   public:
    virtual void clock_advanced() noexcept = 0;

   protected:
    ~Listener() = default;
  };

  virtual ~Clock() = default;
  /// Monotonic time: what delays and deadlines are measured in.
  virtual time_point now() const noexcept = 0;
  /// Wall-clock time: what reports and dead letters show.
  virtual Timestamp wall_now() const noexcept = 0;
  /// True when time moves only by advance() (ManualClock): timers then wait for it.
  virtual bool manual() const noexcept { return false; }
  virtual void add_listener(Listener*) {}
  virtual void remove_listener(Listener*) noexcept {}

  /// The process's steady and system clocks. The default of BusOptions::clock.
  static std::shared_ptr<Clock> system();
};

/// A clock that moves only when told to. advance() returns once every bus timer that became
/// due (retries, breaker cool-downs) has run, so a test can check both what happened and
/// what did not. Thread-safe; advances are serialised.
class CRIER_EXPORT ManualClock final : public Clock {
 public:
  /// Starts at an arbitrary fixed point (steady) and at `wall` (wall-clock).
  explicit ManualClock(Timestamp wall = Timestamp(std::chrono::seconds(1'800'000'000)));
  time_point now() const noexcept override;
  Timestamp wall_now() const noexcept override;
  bool manual() const noexcept override { return true; }
  void add_listener(Listener* l) override;
  void remove_listener(Listener* l) noexcept override;

  /// Moves time forward by `d` and wakes the listeners.
  void advance(duration d);

 private:
  std::mutex calls_mu_;  // held while listeners are told; taken by remove_listener
  mutable std::mutex mu_;
  time_point now_;
  Timestamp wall_;
  std::vector<Listener*> listeners_;
};

}  // namespace crier
