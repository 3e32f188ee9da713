// The event bus.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "crier/dead_letter.hpp"
#include "crier/delivery.hpp"
#include "crier/detail/core.hpp"
#include "crier/detail/reader.hpp"
#include "crier/detail/subscribers.hpp"
#include "crier/error.hpp"
#include "crier/event.hpp"
#include "crier/metrics.hpp"
#include "crier/options.hpp"
#include "crier/subscription.hpp"

namespace crier {

namespace detail {

/// True when E can be published and subscribed to; when not, says why at compile time (one
/// message, in place of pages of template errors: callers instantiate nothing more).
template <class E>
constexpr bool check_event_type() {
  static_assert(Event<E>,
                "crier: this type has no event type name that crier can see. Declare one with "
                "CRIER_EVENT(Type, \"com.example.thing.happened\") at namespace scope in the namespace that "
                "declares the type: crier finds it by argument-dependent lookup, so a CRIER_EVENT written in "
                "another namespace (the global one, for a type in namespace shop) is not seen");
  static_assert(!Event<E> || std::is_copy_constructible_v<E>,
                "crier: event types must be copyable: a published event is copied into each async "
                "subscriber's queue, and kept for retries and dead letters. Give the type a copy constructor "
                "(or publish a copyable handle to it, e.g. std::shared_ptr<const T> inside a small struct)");
  return Event<E> && std::is_copy_constructible_v<E>;
}

/// Throws Error(Errc::invalid_argument): the Bus was moved from.
[[noreturn]] CRIER_EXPORT void bus_moved_from();

// Calls each subscriber of one snapshot. Handlers' failures are their subscribers' business;
// an async subscriber's enqueue failure (a full queue) is the publisher's, raised after every
// other subscriber had the event. `Fence`: readers fence themselves (no membarrier).
template <bool Fence, class E>
[[gnu::always_inline]] inline void dispatch_entries(ReadSection& section, const Snapshot& snap, const E& event,
                                                    const PublishMeta& meta) {
  const Entry* it = snap.entries();
  const Entry* const end = it + snap.count;
  bool refused = false;
  for (; it != end; ++it) {
    section.enter<Fence>(it->sub);
    if (!it->sub->active.load(std::memory_order_relaxed)) [[unlikely]]
      continue;
    refused |= !it->deliver(it->sub, &event, meta);
  }
  if (refused) [[unlikely]]
    rethrow_publish_error();
}

template <class E>
[[gnu::always_inline]] inline void dispatch(ReadSection& section, const Snapshot& snap, const E& event,
                                            const PublishMeta& meta) {
  bump_counter(section.record(), snap.published_slot);
  if (section.fenced()) [[unlikely]]
    dispatch_entries<true>(section, snap, event, meta);
  else
    dispatch_entries<false>(section, snap, event, meta);
}

// The slower path taken when some subscriber's handler asks for a Delivery: the envelope
// attributes (id, time, correlation) are made once and shared by every subscriber.
// A durable bus's snapshots all take this path too: the event goes to the transport.
template <class E>
[[gnu::noinline]] void dispatch_with_meta(BusCore& core, ReadSection& section, const Snapshot& snap, const E& event,
                                          const Attributes* attributes, const PublishMeta* parent) {
  if (snap.durable) {
    if constexpr (!codec_available<E>()) throw_no_codec(event_type_v<E>, typeid(E).name());
    std::string data = Codec<E>::encode(event);
    core.store(event_index<E>(), event_type_v<E>, std::span<std::string>(&data, 1), Codec<E>::content_type, attributes,
               parent);
    return;
  }
  PublishMeta meta;
  core.fill_meta(meta, attributes, parent);
  dispatch(section, snap, event, meta);
}

template <class E>
[[gnu::always_inline]] inline void publish_checked(BusCore& core, const E& event, const Attributes* attributes,
                                                   const PublishMeta* parent) {
  const std::uint32_t index = event_index<E>();
  ReadSection section;
  if (core.closed.load(std::memory_order_relaxed)) [[unlikely]]
    core.refuse_if_closed(section.nested() || core.on_worker_thread());
  if (attributes) [[unlikely]]
    validate(*attributes);
  const Snapshot* snap = core.snapshot(index);
  if (snap == nullptr) [[unlikely]]
    snap = &core.first_publish(index, event_type_v<E>);
  if (snap->needs_meta || attributes) [[unlikely]]
    dispatch_with_meta(core, section, *snap, event, attributes, parent);
  else
    dispatch(section, *snap, event, kNoMeta);
}

template <class E>
[[gnu::always_inline]] inline void publish(BusCore& core, const E& event, const Attributes* attributes,
                                           const PublishMeta* parent) {
  if constexpr (check_event_type<E>()) publish_checked(core, event, attributes, parent);
}

}  // namespace detail

/// An event bus. `crier::Bus bus;` is an in-process bus: subscribers are called with the
/// published C++ object itself, never serialised. `crier::Bus bus{transport};` (e.g.
/// `crier::sqlite::open("orders.db")`) stores every event in the transport before publish
/// returns and feeds subscribers from there: at-least-once delivery that survives a crash,
/// with the same API, policies and metrics. Event types then need a codec (JSON by default).
///
/// Thread-safety: every member may be called from any thread at once, and from inside
/// handlers (publish, subscribe, unsubscribe). Ordering: an Async subscriber with
/// concurrency 1 sees one publisher thread's events in publish order; an Inline subscriber
/// sees them in the order of the publish calls on each thread.
/// Failures: a handler's exception never reaches the publisher or another subscriber; it is
/// counted (metrics()), reported to BusOptions::on_error and handled by the subscriber's
/// RetryPolicy, BreakerPolicy and dead letters. The publisher sees only its own failures, as
/// crier::Error: an invalid name, a closed bus, a subscriber's queue full past its deadline.
class CRIER_EXPORT Bus {
 public:
  /// An in-process bus with default options.
  Bus();
  explicit Bus(BusOptions options);
  /// A bus whose events live in `transport` (see crier/transport.hpp). Throws
  /// Error(Errc::invalid_argument) for a null transport.
  explicit Bus(std::shared_ptr<Transport> transport, BusOptions options = {});
  /// Drains (BusOptions::drain_timeout), then stops the workers. Events still queued after
  /// the deadline are reported to on_error with their count. Destroyed from inside one of
  /// its own handlers (async, inline or a retry), it cannot wait for that handler: it closes
  /// the bus to outside publishes and returns at once, and a background thread drains the
  /// bus (with the same deadline) once that handler returned, then frees it. Threads still
  /// draining such buses are joined when the program exits.
  ~Bus();
  /// Moving leaves `other` empty: every later call on it (other than destruction and
  /// assignment) throws Error(Errc::invalid_argument) saying it was moved from.
  Bus(Bus&& other) noexcept = default;
  /// Drains and stops this bus's own events first, as the destructor does.
  Bus& operator=(Bus&& other) noexcept {
    if (this != &other) {
      Bus gone(std::move(*this));
      core_ = std::move(other.core_);
    }
    return *this;
  }

  /// Delivers `event` to every current subscriber of E: Inline ones before this returns,
  /// Async ones through their queues. A subscriber added while this runs is not called by
  /// it. Throws Error(Errc::bus_closed) after drain() began, except when called from a
  /// handler of this bus (a cascade is let through while draining). Allocates nothing.
  /// On a durable bus: returns once the event is stored as durably as the transport
  /// promises, for every subscriber of E in any process, now or later; throws
  /// Error(Errc::transport_error) when it could not be stored (then it is not), and
  /// Error(Errc::codec_error) when E cannot be encoded.
  template <class E>
  [[gnu::always_inline]] void publish(const E& event) {
    if (core_ == nullptr) [[unlikely]]
      detail::bus_moved_from();
    detail::publish(*core_, event, nullptr, nullptr);
  }
  /// As publish(event), with CloudEvents attributes (subject, partition key, extensions).
  /// Throws Error(Errc::invalid_name) for a malformed extension name.
  template <class E>
  [[gnu::always_inline]] void publish(const E& event, const Attributes& attributes) {
    if (core_ == nullptr) [[unlikely]]
      detail::bus_moved_from();
    detail::publish(*core_, event, &attributes, nullptr);
  }

  /// Publishes several events of one type, in order. On a durable bus this returns once all
  /// of them are durable. When it throws, SQLite stored none of them (one journal write);
  /// NATS and Redis store each event by itself and may have stored some (docs/transports.md).
  /// On the memory bus it is publish() for each.
  template <class E>
  void publish_batch(std::span<const E> events) {
    if constexpr (detail::check_event_type<E>()) publish_batch_checked(events);
  }
  template <class E>
  void publish_batch(const std::vector<E>& events) {
    publish_batch(std::span<const E>(events));
  }

  /// Subscribes `handler` to events of type E under `name` (see is_valid_subscriber_name).
  /// The handler is `void(const E&)` or `void(const E&, crier::Delivery&)` and fails by
  /// throwing. Throws Error(Errc::invalid_name) for a bad name, Errc::invalid_argument for a
  /// name already subscribed to E on this bus or bad options, Errc::bus_closed after drain;
  /// on a durable bus, Errc::codec_error when E has no codec (saying what to add).
  template <class E, class H>
  [[nodiscard]] Subscription subscribe(std::string_view name, H&& handler, SubscribeOptions options = {}) {
    using Handler = std::decay_t<H>;
    if constexpr (detail::check_event_type<E>()) {
      static_assert(detail::PlainHandler<Handler, E> || detail::DeliveryHandler<Handler, E>,
                    "crier: a handler must be callable as void(const E&) or void(const E&, crier::Delivery&)");
      if constexpr (detail::PlainHandler<Handler, E> || detail::DeliveryHandler<Handler, E>)
        return subscribe_checked<E>(name, std::forward<H>(handler), options);
    }
    return Subscription();
  }

  /// Stops accepting publishes from outside the bus's handlers, waits until every queued
  /// event (and every event those handlers publish meanwhile) is handled or `timeout`
  /// passes, then stops the workers. Nothing queued is dropped silently: the result says
  /// how many were left. Idempotent. Throws Error(Errc::would_deadlock) from a handler on
  /// this bus's workers.
  DrainResult drain(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

  /// Waits until every event published so far has been handled (or dead-lettered), except
  /// those waiting for a delayed retry, behind a failing event of their key or for a closed
  /// breaker; true when that happened before `timeout`. On the SQLite store what it waited
  /// for is then finished in the file too (held by no claim, so prune() can take it); NATS
  /// and Redis acknowledgements may still be on their way. The bus stays open. Throws
  /// Error(Errc::would_deadlock) from a handler on this bus's workers.
  bool flush(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

  /// Counters of every event type and current subscriber. See to_prometheus().
  MetricsSnapshot metrics() const;

  /// Dead letters matching `filter` (all by default), oldest first.
  std::vector<DeadLetter> dead_letters(const DeadLetterFilter& filter = {}) const;
  std::size_t dead_letter_count(const DeadLetterFilter& filter = {}) const;
  /// Sends matching dead letters back to their subscriber (by name and event type) with a
  /// fresh attempt count, and removes them. Those whose subscriber is gone stay. Returns
  /// how many were sent.
  std::size_t redrive(const DeadLetterFilter& filter = {});
  /// Deletes matching dead letters; returns how many.
  std::size_t purge(const DeadLetterFilter& filter = {});

  /// The CloudEvents source of this bus's events.
  const std::string& source() const;

 private:
  template <class E>
  void publish_batch_checked(std::span<const E> events) {
    detail::BusCore& c = core();
    if (!c.durable()) {
      for (const E& e : events) publish(e);
      return;
    }
    if (events.empty()) return;
    if constexpr (!detail::codec_available<E>()) detail::throw_no_codec(event_type_v<E>, typeid(E).name());
    if (c.closed.load(std::memory_order_relaxed)) c.refuse_if_closed(c.on_worker_thread());
    std::vector<std::string> data;
    data.reserve(events.size());
    for (const E& e : events) data.push_back(Codec<E>::encode(e));
    c.store(detail::event_index<E>(), event_type_v<E>, data, Codec<E>::content_type, nullptr, nullptr);
  }

  template <class E, class H>
  Subscription subscribe_checked(std::string_view name, H&& handler, const SubscribeOptions& options) {
    using Handler = std::decay_t<H>;
    check_subscription(name, event_type_v<E>, options);
    detail::BusCore& c = core();
    std::unique_ptr<detail::SubscriberBase> sub;
    detail::DeliverFn deliver = nullptr;
    detail::MakeDelivered make_delivered = nullptr;
    if (c.durable()) {
      check_durable(name, event_type_v<E>, options);
      if constexpr (!detail::codec_round_trips<E>()) {
        detail::throw_no_codec(event_type_v<E>, typeid(E).name());
      } else {
        using S = detail::DurableSubscriber<E, Handler>;
        sub = std::make_unique<S>(c, std::string(name), options, std::forward<H>(handler));
        make_delivered = &detail::DeliveredEvent<E>::make;
      }
    } else if (options.mode == DeliveryMode::sync) {
      using S = detail::InlineSubscriber<E, Handler>;
      sub = std::make_unique<S>(c, std::string(name), options, std::forward<H>(handler));
      deliver = &S::deliver;
    } else {
      // Events queued for a Delivery handler carry their envelope attributes; for a plain
      // handler only the few publishes that have some (a key, a subject) keep them, on the
      // side (see AsyncSubscriber). One instantiation per handler keeps compile times down.
      using S = detail::AsyncSubscriber<E, Handler, detail::DeliveryHandler<Handler, E>>;
      sub = std::make_unique<S>(c, std::string(name), options, std::forward<H>(handler));
      deliver = &S::deliver;
    }
    detail::SubscriberBase* raw = sub.get();
    c.add(detail::event_index<E>(), std::move(sub), deliver, make_delivered);
    return Subscription(core_, raw);
  }

  // The core; throws when this bus was moved from.
  detail::BusCore& core() const;
  static void check_subscription(std::string_view name, std::string_view type, const SubscribeOptions& options);
  static void check_durable(std::string_view name, std::string_view type, const SubscribeOptions& options);
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
