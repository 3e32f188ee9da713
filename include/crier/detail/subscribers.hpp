// The typed halves of subscribers: how an inline handler is called, how an async handler's
// queue is filled and drained. Internal.
#pragma once

#include <atomic>
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
/// Scheduling protocol (no lost wake-up): a publisher claims a slot with a seq_cst RMW and
/// then loads `runners` (seq_cst); a run that finds the queue empty decrements `runners`
/// (seq_cst) and then re-checks the queue (seq_cst). One of the two always sees the other.
template <class E, class H>
class AsyncSubscriber final : public SubscriberBase {
  static constexpr bool kWithMeta = DeliveryHandler<H, E>;
  using Item = QueuedEvent<E, kWithMeta>;

 public:
  AsyncSubscriber(BusCore& core, std::string name, const SubscribeOptions& o, H h)
      : SubscriberBase(core, std::move(name), event_type_v<E>, o, kWithMeta),
        handler_(std::move(h)),
        ring_(std::bit_ceil(std::max<std::size_t>(o.queue_capacity, 2))) {}

  static void deliver(SubscriberBase* base, const void* event, const PublishMeta& meta) {
    static_cast<AsyncSubscriber*>(base)->enqueue(*static_cast<const E*>(event), meta);
  }

  std::size_t run_batch(std::size_t max) override {
    std::uint64_t first = 0;
    const std::size_t n = ring_.claim(max, first);
    if (n == 0) return 0;
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t ok = 0;
    for (std::size_t i = 0; i < n; ++i) {
      Item& item = ring_.at(first + i);
      if (active.load(std::memory_order_relaxed)) [[likely]] {
        try {
          call_handler<E>(handler_, *this, item.event, meta_of(item), 1);
          ++ok;
        } catch (...) {
          core.handler_failed(*this, 1);
        }
      }
      ring_.release(first + i);
    }
    delivered.fetch_add(ok, std::memory_order_relaxed);
    busy_ns.fetch_add(
        static_cast<std::uint64_t>((std::chrono::steady_clock::now() - start) / std::chrono::nanoseconds(1)),
        std::memory_order_relaxed);
    // Pairs with the publisher's increment of space_waiters_ in wait_for_space().
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (space_waiters_.load(std::memory_order_relaxed) != 0) wake_blocked_publishers();
    return n;
  }

  std::size_t queued() const noexcept override { return ring_.size(); }

  void wake_blocked_publishers() noexcept override {
    space_epoch_.fetch_add(1, std::memory_order_seq_cst);
    space_epoch_.notify_all();
  }

 private:
  static const PublishMeta& meta_of(const Item& item) noexcept {
    if constexpr (kWithMeta) {
      return item.meta;
    } else {
      static const PublishMeta none{};
      return none;
    }
  }

  void enqueue(const E& event, const PublishMeta& meta) {
    if (!ring_.try_emplace(event, meta)) [[unlikely]]
      wait_for_space(event, meta);
    if (runners.load(std::memory_order_seq_cst) < concurrency) [[unlikely]]
      core.try_schedule(*this);
  }

  [[gnu::noinline]] void wait_for_space(const E& event, const PublishMeta& meta) {
    const ReaderRecord& me = this_thread_reader();
    if (me.worker_of == &core && me.running[0].load(std::memory_order_relaxed) == this)
      throw Error(Errc::queue_full, "subscriber '" + name + "' published to its own full queue (" +
                                        std::to_string(ring_.capacity()) + " events): waiting would deadlock");
    space_waiters_.fetch_add(1, std::memory_order_seq_cst);
    struct Leave {
      std::atomic<int>& w;
      ~Leave() { w.fetch_sub(1, std::memory_order_relaxed); }
    } leave{space_waiters_};
    for (;;) {
      const std::uint32_t epoch = space_epoch_.load(std::memory_order_seq_cst);
      if (ring_.try_emplace(event, meta)) return;
      if (core.stopped())
        throw Error(Errc::bus_closed, "subscriber '" + name + "' stopped while its queue was full");
      core.try_schedule(*this);
      space_epoch_.wait(epoch, std::memory_order_seq_cst);
    }
  }

  H handler_;
  Ring<Item> ring_;
  alignas(64) std::atomic<int> space_waiters_{0};
  std::atomic<std::uint32_t> space_epoch_{0};
};

}  // namespace crier::detail
