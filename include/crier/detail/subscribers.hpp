// The typed halves of subscribers: how an inline handler is called, how an async handler's
// queue is filled and drained. Internal.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "crier/codec.hpp"
#include "crier/delivery.hpp"
#include "crier/detail/core.hpp"
#include "crier/detail/reader.hpp"
#include "crier/detail/ring.hpp"

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
    Delivery d(sub, meta, &event, encoder_of<E>(), attempt);
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

/// The typed parts every subscriber shares: how one attempt calls the handler.
template <class E, class H>
class TypedSubscriber : public SubscriberBase {
 protected:
  TypedSubscriber(BusCore& core, std::string name, const SubscribeOptions& o, H h, bool wants_meta)
      : SubscriberBase(core, std::move(name), event_type_v<E>, o, wants_meta, &ParkedEvent<E>::make, &attempt),
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
  InlineSubscriber(BusCore& core, std::string name, const SubscribeOptions& o, H h)
      : Base(core, std::move(name), o, std::move(h), DeliveryHandler<H, E>) {}

  static bool deliver(SubscriberBase* base, const void* event, const PublishMeta& meta) {
    auto* self = static_cast<InlineSubscriber*>(base);
    // Deliveries are not counted here (that would cost every publish): metrics derive them
    // from the type's publish count and the first-attempt failures.
    try {
      call_handler<E>(self->handler_, *self, *static_cast<const E*>(event), meta, 1);
    } catch (...) {
      self->first_attempt_failures.fetch_add(1, std::memory_order_relaxed);
      self->core.attempt_failed(*self, 1, event, meta, nullptr);
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
// For handlers that take no Delivery: the attributes travel only when the publish had some
// (a subject, a key, another subscriber's Delivery), for dead letters and ordering.
template <class E>
struct QueuedEvent<E, false> {
  E event;
  std::unique_ptr<PublishMeta> meta;
  QueuedEvent(const E& e, const PublishMeta& m)
      : event(e), meta(m.id.is_nil() ? nullptr : std::make_unique<PublishMeta>(m)) {}
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
  using Q = Lane<Item>;
  static constexpr std::uint32_t kMaxLanes = 1024;

 public:
  AsyncSubscriber(BusCore& core, std::string name, const SubscribeOptions& o, H h)
      : Base(core, std::move(name), o, std::move(h), WithMeta),
        capacity_(std::bit_ceil(std::max<std::size_t>(o.queue_capacity, 2))),
        lanes_(new std::atomic<Q*>[kMaxLanes]{}),
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

  void wake_blocked_publishers() noexcept override {
    std::lock_guard lock(space_mu_);
    space_cv_.notify_all();
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
      if (const Q* lane = lanes_[i].load(std::memory_order_acquire)) total += lane->size();
    return total;
  }

 private:
  static const PublishMeta& meta_of(const Item& item) noexcept {
    if constexpr (WithMeta)
      return item.meta;
    else
      return item.meta ? *item.meta : kNoMeta;
  }

  // Handles one event taken from a lane; true when the handler returned normally. An ordered
  // subscriber's event must have been admitted (in lane order) first.
  bool handle(Item& item, bool timed, Clock& clock) {
    if (!this->active.load(std::memory_order_relaxed)) [[unlikely]]
      return false;
    const auto t0 = timed ? clock.now() : Clock::time_point{};
    try {
      call_handler<E>(this->handler_, *this, item.event, meta_of(item), 1);
      if (timed) this->observe_latency(clock.now() - t0);
      this->breaker_success();
      if (this->ordering == Ordering::ordered) this->ordered_done(meta_of(item).partition_key());
      return true;
    } catch (...) {
      if (timed) this->observe_latency(clock.now() - t0);
      this->core.attempt_failed(*this, 1, &item.event, meta_of(item), nullptr);
      return false;
    }
  }

  // The lane's only consumer: handles up to `max` events in place, one claim and one release
  // per batch. Latency is sampled (every call when a budget is set) to keep clock reads off
  // most events. Sets `stop` when the breaker says no more.
  std::size_t drain_lane(Q& lane, std::size_t max, bool& stop) {
    std::uint64_t first = 0;
    const std::size_t n = lane.ready(max, first);
    if (n == 0) return 0;
    Clock& clock = this->core.clock();
    const bool time_all = this->handler_budget.count() > 0;
    const auto start = clock.now();
    std::uint64_t ok = 0;
    std::uint64_t pos = first;
    for (; pos != first + n; ++pos) {
      if (!this->breaker_allows()) [[unlikely]] {
        stop = true;
        break;
      }
      Item& item = lane.at(pos);
      if (this->ordering != Ordering::ordered || this->ordered_admit(&item.event, meta_of(item)))
        ok += handle(item, time_all || ((pos - first) & 15) == 0, clock) ? 1 : 0;
      item.~Item();
    }
    lane.release_until(pos);
    finish_batch(ok, clock.now() - start);
    return static_cast<std::size_t>(pos - first);
  }

  // A lane with other consumers (concurrency > 1, or publishers dropping its oldest event):
  // each event is moved out under the lane's flag and handled after it is released, so no
  // handler ever holds a lane.
  std::size_t take_one_by_one(Q& lane, std::size_t max, bool& stop) {
    Clock& clock = this->core.clock();
    const bool time_all = this->handler_budget.count() > 0;
    const auto start = clock.now();
    std::size_t n = 0;
    std::uint64_t ok = 0;
    while (n < max) {
      if (!this->breaker_allows()) {
        stop = true;
        break;
      }
      if (lane.busy.exchange(true, std::memory_order_acquire)) break;
      std::uint64_t first = 0;
      if (lane.ready(1, first) == 0) {
        lane.busy.store(false, std::memory_order_release);
        break;
      }
      Item item(std::move(lane.at(first)));
      lane.at(first).~Item();
      lane.release_until(first + 1);
      // Keys are admitted in lane order, before another run can take the next event.
      const bool admitted = this->ordering != Ordering::ordered || this->ordered_admit(&item.event, meta_of(item));
      lane.busy.store(false, std::memory_order_release);
      if (admitted) ok += handle(item, time_all || (n & 15) == 0, clock) ? 1 : 0;
      ++n;
    }
    if (n != 0) finish_batch(ok, clock.now() - start);
    return n;
  }

  void finish_batch(std::uint64_t ok, Clock::duration busy) {
    this->delivered.fetch_add(ok, std::memory_order_relaxed);
    this->busy_ns.fetch_add(static_cast<std::uint64_t>(busy.count()), std::memory_order_relaxed);
    // Pairs with the publisher's increment of space_waiters_ in enqueue_slow().
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (space_waiters_.load(std::memory_order_relaxed) != 0) wake_blocked_publishers();
  }

  void enqueue(const E& event, const PublishMeta& meta) {
    const ReaderRecord& me = *tls_reader;  // set: we run inside the publisher's ReadSection
    Q* lane = me.index < kMaxLanes ? lanes_[me.index].load(std::memory_order_acquire) : nullptr;
    if (lane == nullptr || !lane->try_push(event, meta)) [[unlikely]]
      enqueue_slow(me, event, meta);
    reader_order_point();  // the push before the load below (see the class comment)
    if (this->runners.load(std::memory_order_relaxed) < this->concurrency) [[unlikely]]
      this->core.try_schedule(*this);
  }

  [[gnu::noinline]] void enqueue_slow(const ReaderRecord& me, const E& event, const PublishMeta& meta) {
    if (me.index >= kMaxLanes)
      throw Error(Errc::invalid_argument, "more than 1024 threads publish at once to subscriber '" + this->name + "'");
    Q* lane = lanes_[me.index].load(std::memory_order_acquire);
    if (lane == nullptr) {
      lane = new Q(capacity_);  // once per publishing thread
      lanes_[me.index].store(lane, std::memory_order_release);
      std::uint32_t count = lane_count_.load(std::memory_order_relaxed);
      while (count < me.index + 1 &&
             !lane_count_.compare_exchange_weak(count, me.index + 1, std::memory_order_acq_rel)) {
      }
    }
    if (lane->try_push(event, meta)) return;
    // Full.
    if (this->overflow == Overflow::drop_oldest) {
      drop_oldest(*lane);
      if (lane->try_push(event, meta)) return;
    }
    auto full = [&](const char* why) {
      this->rejected.fetch_add(1, std::memory_order_relaxed);
      return Error(Errc::queue_full, "subscriber '" + this->name + "' of " + std::string(this->event_type) + ": " +
                                         why + " (" + std::to_string(capacity_) + " events per publishing thread)");
    };
    if (me.worker_of == &this->core && me.running[0].load(std::memory_order_relaxed) == this)
      throw full("published to its own full queue: waiting would deadlock");
    if (this->overflow == Overflow::reject) throw full("queue full");
    space_waiters_.fetch_add(1, std::memory_order_seq_cst);
    struct Leave {
      std::atomic<int>& w;
      ~Leave() { w.fetch_sub(1, std::memory_order_relaxed); }
    } leave{space_waiters_};
    const auto deadline = std::chrono::steady_clock::now() + this->block_timeout;
    std::unique_lock lock(space_mu_);
    for (;;) {
      if (lane->try_push(event, meta)) return;
      if (this->core.stopped())
        throw Error(Errc::bus_closed, "subscriber '" + this->name + "' stopped while its queue was full");
      this->core.try_schedule(*this);
      if (space_cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        if (lane->try_push(event, meta)) return;
        throw full("queue stayed full past the publish deadline");
      }
    }
  }

  // Takes the lane's consumer role for a moment to discard its oldest event.
  void drop_oldest(Q& lane) {
    while (lane.busy.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    std::uint64_t first = 0;
    if (lane.ready(1, first) == 1) {
      lane.at(first).~Item();
      lane.release_until(first + 1);
      this->dropped.fetch_add(1, std::memory_order_relaxed);
    }
    lane.busy.store(false, std::memory_order_release);
  }

  // Read by publishers.
  const std::size_t capacity_;
  std::unique_ptr<std::atomic<Q*>[]> lanes_;  // indexed by ReaderRecord::index
  std::atomic<std::uint32_t> lane_count_{0};  // lanes_[0, lane_count_) may be set
  const bool lane_locks_;                     // lanes may have more than one consumer
  // Used by runs: on another cache line, so runs never invalidate what publishers read.
  alignas(64) std::atomic<std::uint32_t> next_lane_{0};  // where the next run starts: fairness
  std::atomic<int> space_waiters_{0};                    // publishers blocked on a full lane
  std::mutex space_mu_;
  std::condition_variable space_cv_;
};

}  // namespace crier::detail
