#include "crier/clock.hpp"

#include <algorithm>

namespace crier {

namespace {

class SystemClock final : public Clock {
 public:
  time_point now() const noexcept override {
    return std::chrono::time_point_cast<duration>(std::chrono::steady_clock::now());
  }
  Timestamp wall_now() const noexcept override { return std::chrono::system_clock::now(); }
};

}  // namespace

std::shared_ptr<Clock> Clock::system() {
  static const std::shared_ptr<Clock> clock = std::make_shared<SystemClock>();
  return clock;
}

ManualClock::ManualClock(Timestamp wall) : now_(std::chrono::hours(1)), wall_(wall) {}

Clock::time_point ManualClock::now() const noexcept {
  std::lock_guard lock(mu_);
  return now_;
}

Timestamp ManualClock::wall_now() const noexcept {
  std::lock_guard lock(mu_);
  return wall_;
}

void ManualClock::add_listener(Listener* l) {
  std::lock_guard lock(mu_);
  listeners_.push_back(l);
}

void ManualClock::remove_listener(Listener* l) noexcept {
  std::lock_guard calls(calls_mu_);  // not while advance() is telling it
  std::lock_guard lock(mu_);
  std::erase(listeners_, l);
}

void ManualClock::advance(duration d) {
  std::lock_guard calls(calls_mu_);
  std::vector<Listener*> listeners;
  {
    std::lock_guard lock(mu_);
    now_ += d;
    wall_ += std::chrono::duration_cast<Timestamp::duration>(d);
    listeners = listeners_;
  }
  for (Listener* l : listeners) l->clock_advanced();
}

}  // namespace crier
