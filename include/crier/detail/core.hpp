// The non-template core a Bus funnels into, and the pieces of it that the inline publish
// path reads. Internal: user code includes <crier/crier.hpp> instead.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "crier/envelope.hpp"
#include "crier/export.hpp"
#include "crier/options.hpp"

namespace crier::detail {

class BusCore;

/// What a publish carries besides the event. Filled only when some subscriber asks for it.
struct PublishMeta {
  Uuid id;
  Timestamp time;
  Uuid correlation_id;
  Uuid causation_id;
  std::shared_ptr<const Attributes> attributes;
};

/// What handlers that take no Delivery are given: nothing is read from it.
inline const PublishMeta kNoMeta{};

/// One subscriber: its identity, counters and (for async ones) its queue. Type-erased; the
/// typed parts live in InlineSubscriber / AsyncSubscriber. Lifetime: reference-counted by its
/// registration and by each pending run on the worker pool; freed only after every dispatch
/// section that could still read it has ended.
class CRIER_EXPORT SubscriberBase {
 public:
  SubscriberBase(BusCore& core, std::string name, std::string_view event_type, const SubscribeOptions& options,
                 bool wants_meta);
  virtual ~SubscriberBase();
  SubscriberBase(const SubscriberBase&) = delete;
  SubscriberBase& operator=(const SubscriberBase&) = delete;

  /// Async: handles up to `max` queued events on the calling worker; returns how many it
  /// took from the queue.
  virtual std::size_t run_batch(std::size_t max);
  /// Async: events waiting in the queue (seq_cst loads: a run that ends re-checks with it).
  virtual std::size_t queued() const noexcept;
  /// Async: wakes publishers blocked on a full queue (at shutdown).
  virtual void wake_blocked_publishers() noexcept;

  BusCore& core;
  const std::string name;
  const std::string_view event_type;
  const DeliveryMode mode;
  const int concurrency;
  const bool wants_meta;
  std::uint32_t type_index = 0;  // set by BusCore::add

  // Read by every publish: kept apart from the counters that runs write.
  std::atomic<bool> active{true};  // cleared first by unsubscribe
  std::atomic<int> runners{0};     // async: runs scheduled or running on the pool
  std::atomic<int> refs{1};        // registration + pending runs

  alignas(64) std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> busy_ns{0};
};

/// How a snapshot calls one subscriber: typed code behind a plain function pointer.
using DeliverFn = void (*)(SubscriberBase*, const void* event, const PublishMeta& meta);

struct Entry {
  DeliverFn deliver;
  SubscriberBase* sub;
};

/// The immutable, contiguous subscriber array of one event type on one bus.
struct Snapshot {
  std::uint32_t count = 0;
  bool needs_meta = false;
  Entry* entries() noexcept { return reinterpret_cast<Entry*>(this + 1); }
  const Entry* entries() const noexcept { return reinterpret_cast<const Entry*>(this + 1); }
};

class WorkerPool;
struct Retired;

/// Everything a Bus owns. Thread-safe: publish paths read it without locks; writers
/// (subscribe, unsubscribe, drain) serialise on `writer_mu_`.
class CRIER_EXPORT BusCore {
 public:
  explicit BusCore(BusOptions options);
  ~BusCore();
  BusCore(const BusCore&) = delete;
  BusCore& operator=(const BusCore&) = delete;

  /// The current subscribers of an event type, or null. Valid while the caller's
  /// ReadSection lasts.
  const Snapshot* snapshot(std::uint32_t type_index) const noexcept {
    if (type_index < kDirect) [[likely]]
      return direct_[type_index].load(std::memory_order_acquire);
    const auto* chunk = chunks_[type_index >> kChunkBits].load(std::memory_order_acquire);
    return chunk ? chunk->slots[type_index & kChunkMask].load(std::memory_order_acquire) : nullptr;
  }

  /// Set once drain() begins; publish checks it with a relaxed load.
  std::atomic<bool> closed{false};

  /// Throws Errc::bus_closed unless the publish comes from a handler of this bus (a cascade
  /// that drain lets through). Called only when `closed` is set.
  void refuse_if_closed(bool nested_in_handler) const;

  /// Records a handler's exception: counts it and tells on_error. Call inside a catch block.
  void handler_failed(SubscriberBase& sub, int attempt) noexcept;
  /// Inside the publish loop's catch block: an Inline subscriber's handler failed (recorded),
  /// or enqueueing for an Async one failed, which is the publisher's error (rethrown).
  [[gnu::cold]] void delivery_failed(SubscriberBase& sub);

  /// Makes sure an async subscriber with queued events has a run on the pool.
  void try_schedule(SubscriberBase& sub);

  /// Fills a PublishMeta (id, time, correlation) for a publish.
  void fill_meta(PublishMeta& meta, const Attributes* attributes, const PublishMeta* parent) const;

  /// Registers a subscriber; throws on a duplicate name for the type or a closed bus.
  void add(std::uint32_t type_index, std::unique_ptr<SubscriberBase> sub, DeliverFn deliver);
  /// Unregisters a subscriber; once it returns, its handler is not running on another
  /// thread and will not be called again. Returns events discarded from its queue.
  std::size_t remove(SubscriberBase* sub) noexcept;

  DrainResult drain(std::chrono::nanoseconds timeout);
  std::vector<SubscriberStats> stats() const;
  const std::string& source() const noexcept { return source_; }
  std::chrono::milliseconds drain_timeout() const noexcept { return options_.drain_timeout; }
  /// True when the calling thread is one of this bus's workers.
  bool on_worker_thread() const noexcept;
  /// True once the worker pool has stopped (after drain).
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }

  /// Called by the pool when a run ends; re-schedules if events arrived meanwhile.
  void run_finished(SubscriberBase& sub);
  void release_ref(SubscriberBase* sub) noexcept;

 private:
  static constexpr unsigned kChunkBits = 8;
  static constexpr std::uint32_t kChunkMask = (1u << kChunkBits) - 1;
  static constexpr std::size_t kChunks = 256;  // 65,536 event types per process
  static constexpr std::uint32_t kDirect = 256;  // the first types skip the chunk lookup
  struct Chunk {
    std::atomic<Snapshot*> slots[1u << kChunkBits] = {};
  };

  std::atomic<Snapshot*>& slot_of(std::uint32_t type_index);

  void retire_snapshot(Snapshot* s);
  void reclaim(bool wait_all);
  void report(std::string_view subscriber, std::string_view type, std::string_view message, int attempt) const noexcept;

  BusOptions options_;
  std::string source_;
  std::atomic<Snapshot*> direct_[kDirect] = {};
  std::atomic<Chunk*> chunks_[kChunks] = {};  // chunk 0 unused: its types are direct_

  mutable std::mutex writer_mu_;
  std::vector<SubscriberBase*> subscribers_;      // guarded by writer_mu_
  std::vector<std::unique_ptr<Retired>> retired_;  // guarded by writer_mu_
  std::unique_ptr<WorkerPool> pool_;
  std::atomic<bool> stopped_{false};
  std::atomic<std::uint64_t> schedule_epoch_{0};  // counts runs scheduled: drain's quiescence check
  std::atomic<bool> draining_{false};
  std::mutex drain_mu_;
  std::condition_variable drain_cv_;
  friend class WorkerPool;
};

}  // namespace crier::detail
