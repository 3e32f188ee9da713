// What the inline publish path and the typed subscribers see of a bus: the snapshot table,
// the subscriber fields read per event, and the calls into the library. The rest of the bus
// lives in src/. Internal: user code includes <crier/crier.hpp> instead.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crier/clock.hpp"
#include "crier/envelope.hpp"
#include "crier/export.hpp"
#include "crier/metrics.hpp"
#include "crier/options.hpp"

namespace crier {
class Lease;
}

namespace crier::detail {

class BusCore;

/// What a publish carries besides the event. Filled only when some subscriber asks for it.
struct PublishMeta {
  Uuid id;
  Timestamp time;
  Uuid correlation_id;
  Uuid causation_id;
  std::shared_ptr<const Attributes> attributes;
  // Events a transport delivered: their stored envelope (its source may be another process).
  std::shared_ptr<const Envelope> stored;

  std::string_view partition_key() const noexcept {
    return attributes ? std::string_view(attributes->partition_key) : std::string_view();
  }
};

/// What handlers that take no Delivery are given: nothing is read from it. Compared by
/// address, so it is one object in the library, whichever shared object publishes.
CRIER_EXPORT extern const PublishMeta kNoMeta;

/// An event that failed at least once and now waits: for a delayed retry (on the timer), for
/// its turn (behind a failing event of its key, or for a closed breaker), or for an operator
/// (as a dead letter). Typed by the event only (ParkedEvent<E>), so any subscriber of the
/// type can take it back.
class CRIER_EXPORT Parked {
 public:
  virtual ~Parked();
  virtual const void* event() const noexcept = 0;
  /// False when the event's type has no codec: its envelopes carry no data.
  virtual bool encodable() const noexcept = 0;
  /// The event's data by its codec; throws Error(Errc::codec_error) when encoding fails.
  virtual std::string encode() const = 0;
  virtual std::string_view content_type() const noexcept = 0;
  /// Events a transport delivered arrive undecoded: the worker that first runs one decodes
  /// its stored data (meta.stored) here, so that a subscriber's one feed thread does not
  /// decode them all. Throws on data that does not decode. A no-op for every other event.
  virtual void decode() {}

  PublishMeta meta;  // always filled: an id is assigned when the event is first parked
  int next_attempt = 1;
  int attempts = 0;
  std::string first_error;
  std::string last_error;
  Timestamp first_failure{};
  Timestamp last_failure{};
  bool owns_key = false;  // ordered subscribers: this event is its key's head
  // Events a transport delivered: the consumer's hold on it, given back when it is settled.
  std::unique_ptr<Lease> lease;
};

/// What a handler threw, read in its catch block (no rethrow). `message` lives as long as the
/// exception: use it before the catch block ends.
struct Thrown {
  std::string_view message;
  bool permanent = false;  // a crier::PermanentError
  static Thrown of(const std::exception& e) noexcept {
    return {e.what(), dynamic_cast<const PermanentError*>(&e) != nullptr};
  }
  static Thrown unknown() noexcept { return {"handler threw an exception not derived from std::exception", false}; }
};

/// Makes the typed holder of an event a transport delivered, empty until Parked::decode.
using MakeDelivered = std::unique_ptr<Parked> (*)();
/// Copies an event into a Parked.
using MakeParked = std::unique_ptr<Parked> (*)(const void* event, const PublishMeta& meta);
/// Calls a subscriber's handler once; fails by throwing.
using AttemptFn = void (*)(class SubscriberBase& sub, const void* event, const PublishMeta& meta, int attempt);

class SubscriberState;

/// One subscriber, as the typed code in the headers sees it: its identity, the policies read
/// on every event, and the counters a run bumps. Everything else (events waiting to run
/// again, keys, the breaker's window, the durable feed, the other counters) is the bus's
/// business, in SubscriberState behind `state()`. The typed parts live in InlineSubscriber /
/// AsyncSubscriber. Lifetime: reference-counted by its registration, by each pending run on
/// the worker pool and by each timer holding one of its events; freed only after every
/// dispatch section that could still read it has ended.
class CRIER_EXPORT SubscriberBase {
 public:
  SubscriberBase(BusCore& core, std::string name, std::string_view event_type, const SubscribeOptions& options,
                 bool wants_meta, MakeParked make_parked, AttemptFn attempt);
  virtual ~SubscriberBase();
  SubscriberBase(const SubscriberBase&) = delete;
  SubscriberBase& operator=(const SubscriberBase&) = delete;

  /// False once the subscriber is unsubscribed or the bus stopped: runs then take no further
  /// event, so that every event is either handled or still queued (and counted).
  bool taking() const noexcept;
  /// True unless the circuit breaker holds events back (open, or half-open with its probe
  /// under way); half-open with no probe, the caller's event becomes the probe.
  bool breaker_allows() noexcept {
    return breaker_state_.load(std::memory_order_acquire) == BreakerState::closed || breaker_probe();
  }
  /// After a successful call (subscribers with a breaker).
  void breaker_success() noexcept;
  /// Ordered subscribers: whether an event may run now (else it is parked behind its key),
  /// and that the running event of a key finished (its successor, if any, gets ready).
  bool ordered_admit(const void* event, const PublishMeta& meta);
  void ordered_done(std::string_view key);
  /// Records a handler call's duration; reports it when over budget.
  void observe_latency(std::chrono::nanoseconds d) noexcept;
  /// A publisher found its lane full, and the overflow policy is not to drop: throws
  /// Error(Errc::queue_full) (reject, a worker publishing to its own queue, or past the
  /// block timeout) or Errc::bus_closed, or waits until `try_push(context)` succeeds.
  /// `own_worker`: the publisher is a run of this subscriber.
  void wait_for_room(bool own_worker, std::size_t capacity, bool (*try_push)(void*), void* context);
  /// Wakes publishers waiting in wait_for_room for room in the queue.
  void wake_blocked_publishers() noexcept;
  /// How many publishers wait in wait_for_room.
  int blocked_publishers() const noexcept { return blocked_publishers_.load(std::memory_order_relaxed); }

  /// The bus's own state of this subscriber (defined in the library).
  SubscriberState& state() const noexcept { return *state_; }

  BusCore& core;
  const std::string name;
  const std::string_view event_type;
  const int concurrency;
  const bool has_breaker;  // breaker.consecutive_failures > 0 || breaker.failure_rate > 0
  const Ordering ordering;
  const Overflow overflow;
  const std::chrono::milliseconds block_timeout;
  const std::chrono::nanoseconds handler_budget;

  // Read by every publish: kept apart from the counters that runs write.
  std::atomic<bool> active{true};  // cleared first by unsubscribe
  std::atomic<int> runners{0};     // runs scheduled or running on the pool

  alignas(64) std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> first_attempt_failures{0};  // inline
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> busy_ns{0};

 protected:
  friend class SubscriberState;
  /// Async: handles up to `max` events from the queue lanes.
  virtual std::size_t run_lanes(std::size_t max);
  virtual std::size_t lanes_queued() const noexcept;

 private:
  bool breaker_probe() noexcept;

  std::atomic<BreakerState> breaker_state_{BreakerState::closed};
  std::atomic<int> blocked_publishers_{0};
  std::unique_ptr<SubscriberState> state_;
};

/// How a snapshot calls one subscriber: typed code behind a plain function pointer. Returns
/// false when the publish failed for this subscriber (its queue refused the event); the error
/// is then held by hold_publish_error() until the publish loop raises it.
using DeliverFn = bool (*)(SubscriberBase*, const void* event, const PublishMeta& meta);

/// Throws Error(Errc::invalid_argument): more publishing threads than an async queue has lanes.
[[noreturn]] CRIER_EXPORT void too_many_publishers(const std::string& subscriber, std::uint32_t lanes);

/// Keeps the current exception for the publish under way on this thread.
CRIER_EXPORT void hold_publish_error() noexcept;
/// Throws the exception kept by hold_publish_error().
[[noreturn]] CRIER_EXPORT void rethrow_publish_error();

struct Entry {
  DeliverFn deliver;
  SubscriberBase* sub;
};

/// The immutable, contiguous subscriber array of one event type on one bus. The entries
/// follow the header in the same allocation, so the header keeps their alignment.
struct alignas(alignof(Entry)) Snapshot {
  std::uint32_t count = 0;
  bool needs_meta = false;
  bool durable = false;              // publishes go to the transport (and never to entries)
  std::uint32_t published_slot = 0;  // per-thread counter of publishes (reader.hpp)
  Entry* entries() noexcept { return reinterpret_cast<Entry*>(this + 1); }
  const Entry* entries() const noexcept { return reinterpret_cast<const Entry*>(this + 1); }
};

/// The part of a bus that the inline publish path reads, and the calls the typed code makes
/// into the rest of it (CoreImpl, in the library). Thread-safe: publish paths read the
/// snapshot table without locks.
class CRIER_EXPORT BusCore {
 public:
  BusCore(const BusCore&) = delete;
  BusCore& operator=(const BusCore&) = delete;

  /// The current subscribers of an event type, or null before its first publish or
  /// subscribe. Valid while the caller's ReadSection lasts.
  const Snapshot* snapshot(std::uint32_t type_index) const noexcept {
    if (type_index < kDirect) [[likely]]
      return direct_[type_index].load(std::memory_order_acquire);
    const auto* chunk = chunks_[type_index >> kChunkBits].load(std::memory_order_acquire);
    return chunk ? chunk->slots[type_index & kChunkMask].load(std::memory_order_acquire) : nullptr;
  }
  /// Makes the (empty) snapshot of a type published before anyone subscribed to it.
  const Snapshot& first_publish(std::uint32_t type_index, std::string_view type_name);

  /// Set once drain() begins; publish checks it with a relaxed load.
  std::atomic<bool> closed{false};
  /// Throws Errc::bus_closed unless the publish comes from a handler of this bus (a cascade
  /// that drain lets through). Called only when `closed` is set.
  void refuse_if_closed(bool nested_in_handler) const;
  /// True once the worker pool has stopped (after drain).
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
  /// True when the calling thread is one of this bus's workers.
  bool on_worker_thread() const noexcept;
  Clock& clock() const noexcept { return *clock_; }

  /// Inside the catch block of a handler's attempt, with what it threw: runs the subscriber's
  /// failure policy (immediate retries, a delayed retry, or the dead letters). `parked` is
  /// the event when it is already parked; otherwise it is copied only if it must wait.
  void attempt_failed(SubscriberBase& sub, int attempt, const void* event, const PublishMeta& meta,
                      std::unique_ptr<Parked> parked, Thrown thrown) noexcept;
  /// Makes sure a subscriber with runnable events has a run on the pool.
  void try_schedule(SubscriberBase& sub);

  /// True when events are stored in a transport (a durable bus).
  bool durable() const noexcept { return durable_; }
  /// Durable publish: stores the events of one type, encoded by its codec, with fresh ids
  /// and times (the attributes and the parent's chain apply to each), and returns once the
  /// transport made them all durable; none is stored when it throws.
  void store(std::uint32_t type_index, std::string_view type, std::span<std::string> data,
             std::string_view content_type, const Attributes* attributes, const PublishMeta* parent);
  /// Fills a PublishMeta (id, time, correlation, the parent's trace context) for a publish.
  void fill_meta(PublishMeta& meta, const Attributes* attributes, const PublishMeta* parent) const;

  /// Registers a subscriber (on a durable bus, with the maker of its delivered events) and,
  /// on a durable bus, starts its feed; throws on a duplicate name for the type or a closed bus.
  void add(std::uint32_t type_index, std::unique_ptr<SubscriberBase> sub, DeliverFn deliver,
           MakeDelivered make_delivered);

 protected:
  BusCore(Clock& clock, bool durable) noexcept : clock_(&clock), durable_(durable) {}
  ~BusCore() = default;

  static constexpr unsigned kChunkBits = 8;
  static constexpr std::uint32_t kChunkMask = (1u << kChunkBits) - 1;
  static constexpr std::size_t kChunks = 256;    // 65,536 event types per process
  static constexpr std::uint32_t kDirect = 256;  // the first types skip the chunk lookup
  struct Chunk {
    std::atomic<Snapshot*> slots[1u << kChunkBits] = {};
  };

  std::atomic<Snapshot*> direct_[kDirect] = {};
  std::atomic<Chunk*> chunks_[kChunks] = {};  // chunk 0 unused: its types are direct_
  std::atomic<bool> stopped_{false};
  Clock* const clock_;
  const bool durable_;
};

inline bool SubscriberBase::taking() const noexcept {
  return active.load(std::memory_order_relaxed) && !core.stopped();
}

}  // namespace crier::detail
