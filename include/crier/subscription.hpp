// The handle that keeps a subscriber subscribed.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "crier/export.hpp"

namespace crier {

class Bus;

namespace detail {
class BusCore;
class SubscriberBase;
}  // namespace detail

/// A move-only RAII handle returned by Bus::subscribe. Destroying it or calling
/// unsubscribe() stops delivery. Once either returns, the handler is not running on any
/// other thread and is never called again, so whatever it captured may be destroyed. Called
/// from inside the subscriber's own handler, it does not wait for that call (it is the
/// caller). Unsubscribing a subscriber whose handler is at that moment unsubscribing this
/// one, on another thread, deadlocks: don't build such cycles.
/// Thread-safe with respect to publishing; one Subscription object must not be used by two
/// threads at once. Outliving the Bus is fine: it then does nothing.
class CRIER_EXPORT Subscription {
 public:
  Subscription() noexcept = default;
  Subscription(Subscription&& other) noexcept;
  Subscription& operator=(Subscription&& other) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription();

  /// Stops delivery (idempotent). Returns how many events were still queued for this
  /// subscriber and were discarded (async subscribers); drain() the bus first to avoid it.
  std::size_t unsubscribe() noexcept;

  /// True until unsubscribe() or the bus's destruction.
  bool active() const noexcept;

 private:
  friend class Bus;  // made by Bus::subscribe
  Subscription(std::weak_ptr<detail::BusCore> core, detail::SubscriberBase* sub) noexcept
      : core_(std::move(core)), sub_(sub) {}

  std::weak_ptr<detail::BusCore> core_;
  detail::SubscriberBase* sub_ = nullptr;
};

}  // namespace crier
