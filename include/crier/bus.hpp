// The event bus.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "crier/delivery.hpp"
#include "crier/detail/core.hpp"
#include "crier/detail/reader.hpp"
#include "crier/detail/subscribers.hpp"
#include "crier/error.hpp"
#include "crier/event.hpp"
#include "crier/options.hpp"
#include "crier/subscription.hpp"

namespace crier {

namespace detail {

// Calls each subscriber of one snapshot. Handlers' exceptions are recorded per subscriber;
// an async subscriber's enqueue failure is the publisher's and propagates.
template <class E>
[[gnu::always_inline]] inline void dispatch(BusCore& core, ReadSection& section, const Snapshot& snap, const E& event,
                                            const PublishMeta& meta) {
  const Entry* it = snap.entries();
  const Entry* const end = it + snap.count;
  for (; it != end; ++it) {
    section.enter(it->sub);
    if (!it->sub->active.load(std::memory_order_relaxed)) [[unlikely]]
      continue;
    try {
      it->deliver(it->sub, &event, meta);
    } catch (...) {
      core.delivery_failed(*it->sub);
    }
  }
}

// The slower path taken when some subscriber's handler asks for a Delivery: the envelope
// attributes (id, time, correlation) are made once and shared by every subscriber.
template <class E>
[[gnu::noinline]] void dispatch_with_meta(BusCore& core, ReadSection& section, const Snapshot& snap, const E& event,
                                          const Attributes* attributes, const PublishMeta* parent) {
  PublishMeta meta;
  core.fill_meta(meta, attributes, parent);
  dispatch(core, section, snap, event, meta);
}

template <class E>
[[gnu::always_inline]] inline void publish(BusCore& core, const E& event, const Attributes* attributes,
                                           const PublishMeta* parent) {
  static_assert(Event<E>,
                "crier: this type has no event type name; declare one next to the type with "
                "CRIER_EVENT(Type, \"com.example.thing.happened\")");
  const std::uint32_t index = event_index<E>();
  ReadSection section;
  if (core.closed.load(std::memory_order_relaxed)) [[unlikely]]
    core.refuse_if_closed(section.nested() || core.on_worker_thread());
  if (attributes) [[unlikely]]
    validate(*attributes);
  const Snapshot* snap = core.snapshot(index);
  if (snap == nullptr) return;
  if (snap->needs_meta) [[unlikely]]
    dispatch_with_meta(core, section, *snap, event, attributes, parent);
  else
    dispatch(core, section, *snap, event, kNoMeta);
}

}  // namespace detail

/// An event bus. `crier::Bus bus;` is an in-process bus: subscribers are called with the
/// published C++ object itself, never serialised.
///
/// Thread-safety: every member may be called from any thread at once, and from inside
/// handlers (publish, subscribe, unsubscribe). Ordering: an Async subscriber with
/// concurrency 1 sees one publisher thread's events in publish order; an Inline subscriber
/// sees them in the order of the publish calls on each thread.
/// Failures: a handler's exception never reaches the publisher or another subscriber; it is
/// counted (stats()) and reported to BusOptions::on_error. The publisher sees only its own
/// failures, as crier::Error: an invalid name, a closed bus.
class CRIER_EXPORT Bus {
 public:
  /// An in-process bus with default options.
  Bus();
  explicit Bus(BusOptions options);
  /// Drains (BusOptions::drain_timeout), then stops the workers. Events still queued after
  /// the deadline are reported to on_error with their count.
  ~Bus();
  Bus(Bus&&) noexcept = default;
  Bus& operator=(Bus&&) noexcept = default;

  /// Delivers `event` to every current subscriber of E: Inline ones before this returns,
  /// Async ones through their queues. A subscriber added while this runs is not called by
  /// it. Throws Error(Errc::bus_closed) after drain() began, except when called from a
  /// handler of this bus (a cascade is let through while draining). Allocates nothing.
  template <class E>
  [[gnu::always_inline]] void publish(const E& event) {
    detail::publish(*core_, event, nullptr, nullptr);
  }
  /// As publish(event), with CloudEvents attributes (subject, partition key, extensions).
  /// Throws Error(Errc::invalid_name) for a malformed extension name.
  template <class E>
  [[gnu::always_inline]] void publish(const E& event, const Attributes& attributes) {
    detail::publish(*core_, event, &attributes, nullptr);
  }

  /// Subscribes `handler` to events of type E under `name` (see is_valid_subscriber_name).
  /// The handler is `void(const E&)` or `void(const E&, crier::Delivery&)` and fails by
  /// throwing. Throws Error(Errc::invalid_name) for a bad name, Errc::invalid_argument for a
  /// name already subscribed to E on this bus or bad options, Errc::bus_closed after drain.
  template <class E, class H>
  [[nodiscard]] Subscription subscribe(std::string_view name, H&& handler, SubscribeOptions options = {}) {
    static_assert(Event<E>,
                  "crier: this type has no event type name; declare one next to the type with "
                  "CRIER_EVENT(Type, \"com.example.thing.happened\")");
    using Handler = std::decay_t<H>;
    static_assert(detail::PlainHandler<Handler, E> || detail::DeliveryHandler<Handler, E>,
                  "crier: a handler must be callable as void(const E&) or void(const E&, crier::Delivery&)");
    check_subscription(name, event_type_v<E>, options);
    std::unique_ptr<detail::SubscriberBase> sub;
    detail::DeliverFn deliver;
    if (options.mode == DeliveryMode::Inline) {
      using S = detail::InlineSubscriber<E, Handler>;
      sub = std::make_unique<S>(*core_, std::string(name), options, std::forward<H>(handler));
      deliver = &S::deliver;
    } else {
      using S = detail::AsyncSubscriber<E, Handler, detail::DeliveryHandler<Handler, E>>;
      sub = std::make_unique<S>(*core_, std::string(name), options, std::forward<H>(handler));
      deliver = &S::deliver;
    }
    detail::SubscriberBase* raw = sub.get();
    core_->add(detail::event_index<E>(), std::move(sub), deliver);
    return Subscription(core_, raw);
  }

  /// Stops accepting publishes from outside the bus's handlers, waits until every queued
  /// event (and every event those handlers publish meanwhile) is handled or `timeout`
  /// passes, then stops the workers. Nothing queued is dropped silently: the result says
  /// how many were left. Idempotent. Throws Error(Errc::would_deadlock) from a handler on
  /// this bus's workers.
  DrainResult drain(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

  /// Counters of every current subscriber.
  std::vector<SubscriberStats> stats() const;

  /// The CloudEvents source of this bus's events.
  const std::string& source() const noexcept;

 private:
  static void check_subscription(std::string_view name, std::string_view type, const SubscribeOptions& options);
  std::shared_ptr<detail::BusCore> core_;
};

template <class E>
void Delivery::publish(const E& event) {
  detail::publish(sub_->core, event, nullptr, meta_);
}
template <class E>
void Delivery::publish(const E& event, const Attributes& attributes) {
  detail::publish(sub_->core, event, &attributes, meta_);
}

}  // namespace crier
