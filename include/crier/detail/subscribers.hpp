// The typed halves of subscribers: how an inline handler is called, how an async handler's
// queue is filled and drained. Internal.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "crier/codec.hpp"
#include "crier/delivery.hpp"
#include "crier/detail/core.hpp"
#include "crier/detail/lane.hpp"
#include "crier/detail/reader.hpp"

namespace crier::detail {

template <class H, class E>
concept PlainHandler = std::invocable<H&, const E&>;
template <class H, class E>
concept DeliveryHandler = std::invocable<H&, const E&, Delivery&>;

template <class E>
Delivery::EncodeFn encoder_of() noexcept {
  return {[](const void* e) { return Codec<E>::encode(*static_cast<const E*>(e)); }, Codec<E>::content_type};
}

template <class E, class H>
inline void call_handler(H& handler, SubscriberBase& sub, const E& event, const PublishMeta& meta, int attempt) {
  if constexpr (DeliveryHandler<H, E>) {
    Delivery d = DeliveryAccess::make(sub, meta, &event, encoder_of<E>(), attempt);
    handler(event, d);
  } else {
    handler(event);
  }
}

/// A copy of a failed event of type E, waiting to be tried again.
template <class E>
class ParkedEvent final : public Parked {
 public:
  explicit ParkedEvent(const E& e) : event_(e) {}
  const void* event() const noexcept override { return &event_; }
  bool encodable() const noexcept override { return codec_available<E>(); }
  std::string encode() const override { return Codec<E>::encode(event_); }
  std::string_view content_type() const noexcept override { return Codec<E>::content_type; }

  static std::unique_ptr<Parked> make(const void* event, const PublishMeta& meta) {
    auto p = std::make_unique<ParkedEvent>(*static_cast<const E*>(event));
    p->meta = meta;
    return p;
  }

 private:
  E event_;
};

/// An event a transport delivered, decoded from its stored data by the worker that first runs
/// it.
template <class E>
class DeliveredEvent final : public Parked {
 public:
  const void* event() const noexcept override { return &*event_; }
  // Never encoded: its envelope is stored (meta.stored) already.
  bool encodable() const noexcept override { return codec_available<E>() && event_.has_value(); }
  std::string encode() const override { return Codec<E>::encode(*event_); }
  std::string_view content_type() const noexcept override { return Codec<E>::content_type; }
  void decode() override {
    if (!event_) event_.emplace(Codec<E>::decode(meta.stored->data));
  }

  static std::unique_ptr<Parked> make() { return std::make_unique<DeliveredEvent>(); }

 private:
  std::optional<E> event_;
};

/// The typed parts every subscriber shares: how one attempt calls the handler.
template <class E, class H>
class TypedSubscriber : public SubscriberBase {
 protected:
  TypedSubscriber(BusCore& bus, std::string sub_name, const SubscribeOptions& o, H h, bool meta)
      : SubscriberBase(bus, std::move(sub_name), event_type_v<E>, o, meta, &ParkedEvent<E>::make, &attempt),
        handler_(std::move(h)) {}

  static void attempt(SubscriberBase& base, const void* event, const PublishMeta& meta, int n) {
    auto& self = static_cast<TypedSubscriber&>(base);
    call_handler<E>(self.handler_, self, *static_cast<const E*>(event), meta, n);
  }

  H handler_;
};

/// A subscriber whose handler runs on the publisher's thread.
template <class E, class H>
class InlineSubscriber final : public TypedSubscriber<E, H> {
  using Base = TypedSubscriber<E, H>;

 public:
  InlineSubscriber(BusCore& bus, std::string sub_name, const SubscribeOptions& o, H h)
      : Base(bus, std::move(sub_name), o, std::move(h), DeliveryHandler<H, E>) {}

  static bool deliver(SubscriberBase* base, const void* event, const PublishMeta& meta) {
    auto* self = static_cast<InlineSubscriber*>(base);
    // Deliveries are not counted here (that would cost every publish): metrics derive them
    // from the type's publish count and the first-attempt failures.
    try {
      call_handler<E>(self->handler_, *self, *static_cast<const E*>(event), meta, 1);
    } catch (const std::exception& e) {
      self->first_attempt_failures.fetch_add(1, std::memory_order_relaxed);
      self->core.attempt_failed(*self, 1, event, meta, nullptr, Thrown::of(e));
    } catch (...) {
      self->first_attempt_failures.fetch_add(1, std::memory_order_relaxed);
      self->core.attempt_failed(*self, 1, event, meta, nullptr, Thrown::unknown());
    }
    return true;
  }
};

template <class E, bool WithMeta>
struct QueuedEvent {
  E event;
  PublishMeta meta;
  QueuedEvent(const E& e, const PublishMeta& m) : event(e), meta(m) {}
};
template <class E>
struct QueuedEvent<E, false> {
  E event;
  QueuedEvent(const E& e, const PublishMeta&) : event(e) {}
};

/// The envelope attributes of a lane's events that carry some, by position: for handlers
/// that take no Delivery, whose queued events are bare. The few publishes that carry
/// attributes (a subject, a key, an id another subscriber asked for) keep them here, so that
/// dead letters still have them; the common case pays one atomic load per batch. Not a
/// template: one implementation in the library serves every event type.
class CRIER_EXPORT SideMetas {
 public:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};
  SideMetas();
  ~SideMetas();
  SideMetas(const SideMetas&) = delete;
  SideMetas& operator=(const SideMetas&) = delete;

  /// Consumer: the position of the first event with attributes here, or kNone.
  std::uint64_t next() const noexcept { return count_.load(std::memory_order_acquire) == 0 ? kNone : next_held(); }
  /// Consumer: takes the attributes of the event at next().
  std::unique_ptr<PublishMeta> take();
  /// Publisher: the event about to be pushed at `position` carries `meta`.
  void add(std::uint64_t position, const PublishMeta& meta);
  /// Publisher: the push after add() failed (the lane was full).
  void remove_last() noexcept;

 private:
  std::uint64_t next_held() const noexcept;
  struct Held;
  std::unique_ptr<Held> held_;
  std::atomic<std::size_t> count_{0};
};

/// One publishing thread's lane of an async subscriber's queue.
template <class Item>
struct LaneState {
  explicit LaneState(std::size_t capacity) : ring(capacity) {}
  Lane<Item> ring;
  SideMetas side;
};

/// A subscriber with its own bounded queue, drained by the bus's worker pool.
///
/// The queue is a set of lanes, one single-producer ring per publishing thread (indexed by
/// the thread's ReaderRecord), so a publish writes only to memory its thread owns. A
/// subscriber with concurrency 1 therefore sees each publisher thread's events in order.
///
/// Scheduling protocol (no lost wake-up): a publisher pushes, then loads `runners`; a run
/// that finds its lanes empty decrements `runners`, runs the heavy barrier (membarrier) and
/// re-reads the lanes. The barrier orders every publisher's push before its load, so one of
/// the two always sees the other; publishers pay nothing for it.
template <class E, class H, bool WithMeta>
class AsyncSubscriber final : public TypedSubscriber<E, H> {
  using Base = TypedSubscriber<E, H>;
  using Item = QueuedEvent<E, WithMeta>;
  using Q = LaneState<Item>;
  static constexpr std::uint32_t kMaxLanes = 1024;

 public:
  AsyncSubscriber(BusCore& bus, std::string sub_name, const SubscribeOptions& o, H h)
      : Base(bus, std::move(sub_name), o, std::move(h), WithMeta),
        capacity_(std::bit_ceil(std::max<std::size_t>(o.queue_capacity, 2))),
        lanes_(new std::atomic<Q*>[kMaxLanes] {}),
        // Lanes are also consumed by publishers dropping their oldest event.
        lane_locks_(o.concurrency > 1 || o.overflow == Overflow::drop_oldest) {}

  ~AsyncSubscriber() override {
    for (std::uint32_t i = 0; i < kMaxLanes; ++i) delete lanes_[i].load(std::memory_order_relaxed);
  }

  static bool deliver(SubscriberBase* base, const void* event, const PublishMeta& meta) {
    try {
      static_cast<AsyncSubscriber*>(base)->enqueue(*static_cast<const E*>(event), meta);
      return true;
    } catch (...) {
      hold_publish_error();
      return false;
    }
  }

 protected:
  std::size_t run_lanes(std::size_t max) override {
    const std::uint32_t count = lane_count_.load(std::memory_order_acquire);
    const std::uint32_t start = next_lane_.load(std::memory_order_relaxed);
    std::size_t taken = 0;
    for (std::uint32_t k = 0; k < count && taken < max; ++k) {
      Q* lane = lanes_[(start + k) % count].load(std::memory_order_acquire);
      if (lane == nullptr) continue;
      bool stop = false;
      taken += lane_locks_ ? take_one_by_one(*lane, max - taken, stop) : drain_lane(*lane, max - taken, stop);
      if (stop) break;
    }
    next_lane_.store(count ? (start + 1) % count : 0, std::memory_order_relaxed);  // fairness
    return taken;
  }

  std::size_t lanes_queued() const noexcept override {
    std::size_t total = 0;
    const std::uint32_t count = lane_count_.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < count; ++i)
      if (const Q* lane = lanes_[i].load(std::memory_order_acquire)) total += lane->ring.size();
    return total;
  }

 private:
  // The envelope attributes of the event at `pos`: in the item, or on the lane's side.
  struct MetaOf {
    std::uint64_t next_side = SideMetas::kNone;
    std::unique_ptr<PublishMeta> held{};
    const PublishMeta& get(Q& lane, const Item& item, std::uint64_t pos) {
      if constexpr (WithMeta) {
        return item.meta;
      } else {
        if (pos != next_side) [[likely]]
          return kNoMeta;
        held = lane.side.take();
        next_side = lane.side.next();
        return *held;
      }
    }
  };

  // Handles one event taken from a lane; true when the handler returned normally. An ordered
  // subscriber's event must have been admitted (in lane order) first.
  bool handle(Item& item, const PublishMeta& meta, bool timed, Clock& clock) {
    const auto t0 = timed ? clock.now() : Clock::time_point{};
    try {
      call_handler<E>(this->handler_, *this, item.event, meta, 1);
      if (timed) this->observe_latency(clock.now() - t0);
      if (this->has_breaker) this->breaker_success();
      if (this->ordering == Ordering::ordered) this->ordered_done(meta.partition_key());
      return true;
    } catch (const std::exception& e) {
      if (timed) this->observe_latency(clock.now() - t0);
      this->core.attempt_failed(*this, 1, &item.event, meta, nullptr, Thrown::of(e));
    } catch (...) {
      if (timed) this->observe_latency(clock.now() - t0);
      this->core.attempt_failed(*this, 1, &item.event, meta, nullptr, Thrown::unknown());
    }
    return false;
  }

  // Latency is sampled, one call in 64 (every call when a budget is set), to keep clock reads
  // off most events.
  bool timed(std::uint64_t pos) const noexcept { return this->handler_budget.count() > 0 || (pos & 63) == 0; }

  // The lane's only consumer: handles up to `max` events in place, one claim and one release
  // per batch. Sets `stop` when the breaker says no more.
  std::size_t drain_lane(Q& lane, std::size_t max, bool& stop) {
    std::uint64_t first = 0;
    const std::size_t n = lane.ring.ready(max, first);
    if (n == 0) return 0;
    Clock& clock = this->core.clock();
    const auto start = clock.now();
    std::uint64_t ok = 0;
    std::uint64_t pos = first;
    MetaOf metas{lane.side.next()};
    const bool plain = !this->has_breaker && this->ordering == Ordering::unordered;
    for (; pos != first + n; ++pos) {
      Item& item = lane.ring.at(pos);
      if (!this->taking() || (!plain && !this->breaker_allows())) [[unlikely]] {
        // Unsubscribed, drain's deadline passed, or the breaker holds the rest: what is not
        // released stays queued, and counted.
        stop = true;
        break;
      }
      const PublishMeta& meta = metas.get(lane, item, pos);
      if (plain || this->ordering != Ordering::ordered || this->ordered_admit(&item.event, meta))
        ok += handle(item, meta, timed(pos), clock) ? 1u : 0u;
      item.~Item();
    }
    lane.ring.release_until(pos);
    finish_batch(ok, clock.now() - start);
    return static_cast<std::size_t>(pos - first);
  }

  // A lane with other consumers (concurrency > 1, or publishers dropping its oldest event):
  // each event is moved out under the lane's flag and handled after it is released, so no
  // handler ever holds a lane.
  std::size_t take_one_by_one(Q& lane, std::size_t max, bool& stop) {
    Clock& clock = this->core.clock();
    const auto start = clock.now();
    std::size_t n = 0;
    std::uint64_t ok = 0;
    while (n < max) {
      if (!this->taking() || !this->breaker_allows()) {
        stop = true;
        break;
      }
      if (lane.ring.busy.exchange(true, std::memory_order_acquire)) break;
      std::uint64_t first = 0;
      if (lane.ring.ready(1, first) == 0) {
        lane.ring.busy.store(false, std::memory_order_release);
        break;
      }
      Item item(std::move(lane.ring.at(first)));
      MetaOf metas{lane.side.next()};
      const PublishMeta& meta = metas.get(lane, item, first);
      lane.ring.at(first).~Item();
      lane.ring.release_until(first + 1);
      // Keys are admitted in lane order, before another run can take the next event.
      const bool admitted = this->ordering != Ordering::ordered || this->ordered_admit(&item.event, meta);
      lane.ring.busy.store(false, std::memory_order_release);
      if (admitted) ok += handle(item, meta, timed(first), clock) ? 1u : 0u;
      ++n;
    }
    if (n != 0) finish_batch(ok, clock.now() - start);
    return n;
  }

  void finish_batch(std::uint64_t ok, Clock::duration busy) {
    this->delivered.fetch_add(ok, std::memory_order_relaxed);
    this->busy_ns.fetch_add(static_cast<std::uint64_t>(busy.count()), std::memory_order_relaxed);
    // Publishers waiting for room: no fence here (it would cost every batch); a waiter that
    // misses this look re-checks within a millisecond.
    if (this->blocked_publishers() != 0) this->wake_blocked_publishers();
  }

  void enqueue(const E& event, const PublishMeta& meta) {
    const ReaderRecord& me = *tls_reader;  // set: we run inside the publisher's ReadSection
    Q* lane = me.index < kMaxLanes ? lanes_[me.index].load(std::memory_order_acquire) : nullptr;
    if (lane == nullptr || !push(*lane, event, meta)) [[unlikely]]
      enqueue_slow(me, event, meta);
    reader_order_point();  // the push before the load below (see the class comment)
    if (this->runners.load(std::memory_order_relaxed) < this->concurrency) [[unlikely]]
      this->core.try_schedule(*this);
  }

  // Pushes an event into a lane, its attributes on the side when it has some and the items do
  // not carry them. False when the lane is full.
  bool push(Q& lane, const E& event, const PublishMeta& meta) {
    if constexpr (!WithMeta) {
      if (&meta != &kNoMeta) [[unlikely]]
        return push_with_side(lane, event, meta);
    }
    return lane.ring.try_push(event, meta);
  }

  [[gnu::noinline]] bool push_with_side(Q& lane, const E& event, const PublishMeta& meta) {
    lane.side.add(lane.ring.next_position(), meta);  // before the event: a run that sees it finds them
    if (lane.ring.try_push(event, meta)) return true;
    lane.side.remove_last();  // full: take them back
    return false;
  }

  [[gnu::noinline]] void enqueue_slow(const ReaderRecord& me, const E& event, const PublishMeta& meta) {
    if (me.index >= kMaxLanes) too_many_publishers(this->name, kMaxLanes);
    Q* lane = lanes_[me.index].load(std::memory_order_acquire);
    if (lane == nullptr) {
      lane = new Q(capacity_);  // once per publishing thread
      lanes_[me.index].store(lane, std::memory_order_release);
      std::uint32_t count = lane_count_.load(std::memory_order_relaxed);
      while (count < me.index + 1 &&
             !lane_count_.compare_exchange_weak(count, me.index + 1, std::memory_order_acq_rel)) {
      }
    }
    if (push(*lane, event, meta)) return;
    // Full.
    if (this->overflow == Overflow::drop_oldest) {
      drop_oldest(*lane);
      if (push(*lane, event, meta)) return;
    }
    struct Retry {
      AsyncSubscriber* self;
      Q* lane;
      const E* event;
      const PublishMeta* meta;
    } retry{this, lane, &event, &meta};
    const bool own_worker = me.worker_of == &this->core && me.running[0].load(std::memory_order_relaxed) == this;
    this->wait_for_room(
        own_worker, capacity_,
        [](void* r) {
          auto& x = *static_cast<Retry*>(r);
          return x.self->push(*x.lane, *x.event, *x.meta);
        },
        &retry);
  }

  // Takes the lane's consumer role for a moment to discard its oldest event.
  void drop_oldest(Q& lane) {
    while (lane.ring.busy.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    std::uint64_t first = 0;
    if (lane.ring.ready(1, first) == 1) {
      if constexpr (!WithMeta)
        if (lane.side.next() == first) lane.side.take();
      lane.ring.at(first).~Item();
      lane.ring.release_until(first + 1);
      this->dropped.fetch_add(1, std::memory_order_relaxed);
    }
    lane.ring.busy.store(false, std::memory_order_release);
  }

  // Read by publishers.
  const std::size_t capacity_;
  std::unique_ptr<std::atomic<Q*>[]> lanes_;  // indexed by ReaderRecord::index
  std::atomic<std::uint32_t> lane_count_{0};  // lanes_[0, lane_count_) may be set
  const bool lane_locks_;                     // lanes may have more than one consumer
  // Used by runs: on another cache line, so runs never invalidate what publishers read.
  alignas(64) std::atomic<std::uint32_t> next_lane_{0};  // where the next run starts: fairness
};

/// A subscriber of a durable bus: the bus's feed queues its stored events as ready events
/// (DeliveredEvent), and its workers run them like any async subscriber's retries.
template <class E, class H>
class DurableSubscriber final : public TypedSubscriber<E, H> {
 public:
  DurableSubscriber(BusCore& bus, std::string sub_name, const SubscribeOptions& o, H h)
      : TypedSubscriber<E, H>(bus, std::move(sub_name), o, std::move(h), true) {}
};

}  // namespace crier::detail
