// The typed halves of subscribers: how an inline handler is called, how an async handler's
// queue is filled and drained. Internal.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
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

/// A subscriber whose handler runs on the publisher's thread.
template <class E, class H>
class InlineSubscriber final : public SubscriberBase {
 public:
  InlineSubscriber(BusCore& core, std::string name, const SubscribeOptions& o, H h)
      : SubscriberBase(core, std::move(name), event_type_v<E>, o, DeliveryHandler<H, E>), handler_(std::move(h)) {}

  static void deliver(SubscriberBase* base, const void* event, const PublishMeta& meta) {
    auto* self = static_cast<InlineSubscriber*>(base);
    call_handler<E>(self->handler_, *self, *static_cast<const E*>(event), meta, 1);
  }

 private:
  H handler_;
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
class AsyncSubscriber final : public SubscriberBase {
  using Item = QueuedEvent<E, WithMeta>;
  using Q = Lane<Item>;
  static constexpr std::uint32_t kMaxLanes = 1024;

 public:
  AsyncSubscriber(BusCore& core, std::string name, const SubscribeOptions& o, H h)
      : SubscriberBase(core, std::move(name), event_type_v<E>, o, WithMeta),
        capacity_(std::bit_ceil(std::max<std::size_t>(o.queue_capacity, 2))),
        lanes_(new std::atomic<Q*>[kMaxLanes]{}),
        handler_(std::move(h)) {}

  ~AsyncSubscriber() override {
    for (std::uint32_t i = 0; i < kMaxLanes; ++i) delete lanes_[i].load(std::memory_order_relaxed);
  }

  static void deliver(SubscriberBase* base, const void* event, const PublishMeta& meta) {
    static_cast<AsyncSubscriber*>(base)->enqueue(*static_cast<const E*>(event), meta);
  }

  std::size_t run_batch(std::size_t max) override {
    const std::uint32_t count = lane_count_.load(std::memory_order_acquire);
    const std::uint32_t start = next_lane_.load(std::memory_order_relaxed);
    std::size_t taken = 0;
    for (std::uint32_t k = 0; k < count && taken < max; ++k) {
      const std::uint32_t i = (start + k) % count;
      Q* lane = lanes_[i].load(std::memory_order_acquire);
      if (lane == nullptr) continue;
      if (concurrency > 1 && lane->busy.exchange(true, std::memory_order_acquire)) continue;
      taken += drain_lane(*lane, max - taken);
      if (concurrency > 1) lane->busy.store(false, std::memory_order_release);
    }
    next_lane_.store(count ? (start + 1) % count : 0, std::memory_order_relaxed);
    return taken;
  }

  std::size_t queued() const noexcept override {
    std::size_t total = 0;
    const std::uint32_t count = lane_count_.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < count; ++i)
      if (const Q* lane = lanes_[i].load(std::memory_order_acquire)) total += lane->size();
    return total;
  }

  void wake_blocked_publishers() noexcept override {
    space_epoch_.fetch_add(1, std::memory_order_seq_cst);
    space_epoch_.notify_all();
  }

 private:
  static const PublishMeta& meta_of(const Item& item) noexcept {
    if constexpr (WithMeta)
      return item.meta;
    else
      return kNoMeta;
  }

  std::size_t drain_lane(Q& lane, std::size_t max) {
    std::uint64_t first = 0;
    const std::size_t n = lane.ready(max, first);
    if (n == 0) return 0;
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t ok = 0;
    for (std::uint64_t pos = first; pos != first + n; ++pos) {
      Item& item = lane.at(pos);
      if (active.load(std::memory_order_relaxed)) [[likely]] {
        try {
          call_handler<E>(handler_, *this, item.event, meta_of(item), 1);
          ++ok;
        } catch (...) {
          core.handler_failed(*this, 1);
        }
      }
      item.~Item();
    }
    lane.release_until(first + n);
    delivered.fetch_add(ok, std::memory_order_relaxed);
    busy_ns.fetch_add(
        static_cast<std::uint64_t>((std::chrono::steady_clock::now() - start) / std::chrono::nanoseconds(1)),
        std::memory_order_relaxed);
    // Pairs with the publisher's increment of space_waiters_ in wait_for_space().
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (space_waiters_.load(std::memory_order_relaxed) != 0) wake_blocked_publishers();
    return n;
  }

  void enqueue(const E& event, const PublishMeta& meta) {
    const ReaderRecord& me = *tls_reader;  // set: we run inside the publisher's ReadSection
    Q* lane = me.index < kMaxLanes ? lanes_[me.index].load(std::memory_order_acquire) : nullptr;
    if (lane == nullptr || !lane->try_push(event, meta)) [[unlikely]]
      enqueue_slow(me, event, meta);
    reader_order_point();  // the push before the load below (see the class comment)
    if (runners.load(std::memory_order_relaxed) < concurrency) [[unlikely]]
      core.try_schedule(*this);
  }

  [[gnu::noinline]] void enqueue_slow(const ReaderRecord& me, const E& event, const PublishMeta& meta) {
    if (me.index >= kMaxLanes)
      throw Error(Errc::invalid_argument, "more than 1024 threads publish at once to subscriber '" + name + "'");
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
    if (me.worker_of == &core && me.running[0].load(std::memory_order_relaxed) == this)
      throw Error(Errc::queue_full, "subscriber '" + name + "' published to its own full queue (" +
                                        std::to_string(capacity_) + " events): waiting would deadlock");
    space_waiters_.fetch_add(1, std::memory_order_seq_cst);
    struct Leave {
      std::atomic<int>& w;
      ~Leave() { w.fetch_sub(1, std::memory_order_relaxed); }
    } leave{space_waiters_};
    for (;;) {
      const std::uint32_t epoch = space_epoch_.load(std::memory_order_seq_cst);
      if (lane->try_push(event, meta)) return;
      if (core.stopped())
        throw Error(Errc::bus_closed, "subscriber '" + name + "' stopped while its queue was full");
      core.try_schedule(*this);
      space_epoch_.wait(epoch, std::memory_order_seq_cst);
    }
  }

  // Read by publishers.
  const std::size_t capacity_;
  std::unique_ptr<std::atomic<Q*>[]> lanes_;  // indexed by ReaderRecord::index
  std::atomic<std::uint32_t> lane_count_{0};  // lanes_[0, lane_count_) may be set
  // Used by runs: on another cache line, so runs never invalidate what publishers read.
  alignas(64) H handler_;
  std::atomic<std::uint32_t> next_lane_{0};  // where the next run starts: fairness
  alignas(64) std::atomic<int> space_waiters_{0};
  std::atomic<std::uint32_t> space_epoch_{0};
};

}  // namespace crier::detail
