// The non-template core a Bus funnels into, and the pieces of it that the inline publish
// path reads. Internal: user code includes <crier/crier.hpp> instead.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "crier/dead_letter.hpp"
#include "crier/envelope.hpp"
#include "crier/export.hpp"
#include "crier/metrics.hpp"
#include "crier/options.hpp"
#include "crier/transport.hpp"

namespace crier::detail {

class BusCore;

/// What a publish carries besides the event. Filled only when some subscriber asks for it.
struct PublishMeta {
  Uuid id;
  Timestamp time;
  Uuid correlation_id;
  Uuid causation_id;
  std::shared_ptr<const Attributes> attributes;
  // Events a transport delivered: their stored envelope (its source may be another
  // process) and position, which the transport needs to settle them.
  std::shared_ptr<const Envelope> stored;
  std::uint64_t sequence = 0;

  std::string_view partition_key() const noexcept {
    return attributes ? std::string_view(attributes->partition_key) : std::string_view();
  }
};

/// What handlers that take no Delivery are given: nothing is read from it.
inline const PublishMeta kNoMeta{};

/// An event that failed at least once and now waits: for a delayed retry (on the timer), for
/// its turn (behind a failing event of its key, or for a closed breaker), or for an operator
/// (as a dead letter). Typed by the event only (ParkedEvent<E>), so any subscriber of the
/// type can take it back.
class Parked {
 public:
  virtual ~Parked() = default;
  virtual const void* event() const noexcept = 0;
  /// False when the event's type has no codec: its envelopes carry no data.
  virtual bool encodable() const noexcept = 0;
  /// The event's data by its codec; throws Error(Errc::codec_error) when encoding fails.
  virtual std::string encode() const = 0;
  virtual std::string_view content_type() const noexcept = 0;

  PublishMeta meta;  // always filled: an id is assigned when the event is first parked
  int next_attempt = 1;
  int attempts = 0;
  std::string first_error;
  std::string last_error;
  Timestamp first_failure{};
  Timestamp last_failure{};
  bool owns_key = false;  // ordered subscribers: this event is its key's head
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

/// Copies an event into a Parked.
using MakeParked = std::unique_ptr<Parked> (*)(const void* event, const PublishMeta& meta);
/// Calls a subscriber's handler once; fails by throwing.
using AttemptFn = void (*)(class SubscriberBase& sub, const void* event, const PublishMeta& meta, int attempt);

/// One subscriber: its identity, policies, counters, and the events of it that wait (ready
/// to run again, behind a key, on the timer). Type-erased; the typed parts live in
/// InlineSubscriber / AsyncSubscriber. Lifetime: reference-counted by its registration, by
/// each pending run on the worker pool and by each timer holding one of its events; freed
/// only after every dispatch section that could still read it has ended.
class CRIER_EXPORT SubscriberBase {
 public:
  SubscriberBase(BusCore& core, std::string name, std::string_view event_type, const SubscribeOptions& options,
                 bool wants_meta, MakeParked make_parked, AttemptFn attempt);
  virtual ~SubscriberBase();
  SubscriberBase(const SubscriberBase&) = delete;
  SubscriberBase& operator=(const SubscriberBase&) = delete;

  /// On a worker: handles up to `max` events, those ready to run again first. Returns how
  /// many it took.
  std::size_t run_batch(std::size_t max);
  /// False once the subscriber is unsubscribed or the bus stopped: runs then take no further
  /// event, so that every event is either handled or still queued (and counted).
  bool taking() const noexcept;
  /// Events that a run could take now (queue lanes and ready list).
  std::size_t runnable() const noexcept { return lanes_queued() + ready_count_.load(std::memory_order_seq_cst); }
  /// Everything waiting: runnable, on the timer, behind a key.
  std::size_t queued() const noexcept { return runnable() + waiting_.load(std::memory_order_relaxed); }
  /// Async: wakes publishers blocked on a full lane (at shutdown).
  virtual void wake_blocked_publishers() noexcept;
  /// Durable: true while the transport holds events this subscriber has not fetched yet.
  virtual bool source_pending() { return false; }
  /// Durable: stored events this subscriber has not finished (after stop_feed: all of them).
  virtual std::uint64_t source_backlog() { return 0; }
  /// Durable: starts fetching (after registration) and stops (at unsubscribe or drain).
  virtual void start_feed() {}
  virtual void stop_feed() noexcept {}

  /// Queues a parked event to be run again by a worker.
  void push_ready(std::unique_ptr<Parked> p);
  /// Runs the attempts of a parked event (a retry, a redrive, a held event's turn).
  void run_parked(std::unique_ptr<Parked> p);

  // Ordered subscribers: whether an event may run now (else it is parked behind its key),
  // and that the running event of a key finished (its successor, if any, gets ready).
  bool ordered_admit(const void* event, const PublishMeta& meta);
  void ordered_done(std::string_view key);
  void ordered_block(std::string_view key);

  // Circuit breaker.
  bool breaker_allows() noexcept {
    return breaker_state_.load(std::memory_order_acquire) == BreakerState::closed || breaker_probe();
  }
  bool breaker_admits_runs() const noexcept;
  void breaker_success() noexcept {
    if (consecutive_failures_.load(std::memory_order_relaxed) != 0 ||
        breaker_state_.load(std::memory_order_relaxed) != BreakerState::closed || breaker.failure_rate > 0)
      breaker_success_slow();
  }
  /// Counts a failure; returns true when the breaker is (now) open.
  bool breaker_failure();
  BreakerState breaker_state() const noexcept { return breaker_state_.load(std::memory_order_acquire); }
  void breaker_half_open();

  /// Records a handler call's duration; reports it when over budget.
  void observe_latency(std::chrono::nanoseconds d) noexcept;
  /// observe_latency(), and adds the call to the handler time (one call, not a batch).
  void observe_handler_time(std::chrono::nanoseconds d) noexcept;

  BusCore& core;
  const std::string name;
  const std::string_view event_type;
  const DeliveryMode mode;
  const int concurrency;
  const bool wants_meta;
  const RetryPolicy retry;
  const BreakerPolicy breaker;
  const bool has_breaker;  // breaker.consecutive_failures > 0 || breaker.failure_rate > 0
  const Ordering ordering;
  const Overflow overflow;
  const std::chrono::milliseconds block_timeout;
  const std::chrono::nanoseconds handler_budget;
  const MakeParked make_parked;
  const AttemptFn attempt_fn;
  Consumer* consumer = nullptr;          // durable: settles events with the transport
  std::uint32_t type_index = 0;         // set by BusCore::add
  std::uint64_t published_before = 0;  // inline: the type's publish count when subscribed

  // Read by every publish: kept apart from the counters that runs write.
  std::atomic<bool> active{true};  // cleared first by unsubscribe
  std::atomic<int> runners{0};     // runs scheduled or running on the pool
  std::atomic<int> refs{1};        // registration + pending runs + timers

  alignas(64) std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> first_attempt_failures{0};  // inline
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> dead_lettered{0};
  std::atomic<std::uint64_t> dropped{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> slow_calls{0};
  std::atomic<std::uint64_t> breaker_opened{0};
  std::atomic<std::uint64_t> corrupt{0};
  std::atomic<std::uint64_t> busy_ns{0};
  std::atomic<std::uint64_t> latency_buckets[LatencyHistogram::kBuckets] = {};
  std::atomic<std::uint64_t> latency_count{0};
  std::atomic<std::uint64_t> latency_sum_ns{0};
  std::atomic<std::uint64_t> latency_max_ns{0};
  std::atomic<std::size_t> waiting_{0};  // on the timer or behind a key

 protected:
  /// Async: handles up to `max` events from the queue lanes.
  virtual std::size_t run_lanes(std::size_t max);
  virtual std::size_t lanes_queued() const noexcept;

 private:
  bool breaker_probe() noexcept;
  void breaker_success_slow() noexcept;

  std::mutex ready_mu_;
  std::deque<std::unique_ptr<Parked>> ready_;  // guarded by ready_mu_
  std::atomic<std::size_t> ready_count_{0};

  std::mutex keys_mu_;
  std::map<std::string, std::deque<std::unique_ptr<Parked>>, std::less<>> keys_;  // guarded by keys_mu_

  std::atomic<BreakerState> breaker_state_{BreakerState::closed};
  std::atomic<int> consecutive_failures_{0};
  std::atomic<bool> probe_in_flight_{false};
  std::mutex window_mu_;
  std::vector<bool> window_;  // last attempts' outcomes (true: failed), guarded by window_mu_
  std::size_t window_next_ = 0;
};

/// How a snapshot calls one subscriber: typed code behind a plain function pointer. Returns
/// false when the publish failed for this subscriber (its queue refused the event); the error
/// is then held by hold_publish_error() until the publish loop raises it.
using DeliverFn = bool (*)(SubscriberBase*, const void* event, const PublishMeta& meta);

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
  bool durable = false;  // publishes go to the transport (and never to entries)
  std::uint32_t published_slot = 0;  // per-thread counter of publishes (reader.hpp)
  Entry* entries() noexcept { return reinterpret_cast<Entry*>(this + 1); }
  const Entry* entries() const noexcept { return reinterpret_cast<const Entry*>(this + 1); }
};

class WorkerPool;
class TimerService;
class DeadLetterStore;
struct Retired;

/// Everything a Bus owns. Thread-safe: publish paths read it without locks; writers
/// (subscribe, unsubscribe, drain) serialise on `writer_mu_`.
class CRIER_EXPORT BusCore {
 public:
  explicit BusCore(BusOptions options, std::shared_ptr<Transport> transport = nullptr);
  ~BusCore();
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

  /// Inside the catch block of a handler's attempt, with what it threw: runs the subscriber's
  /// failure policy
  /// (immediate retries, a delayed retry, or the dead letters). `parked` is the event when
  /// it is already parked; otherwise it is copied only if it must wait.
  void attempt_failed(SubscriberBase& sub, int attempt, const void* event, const PublishMeta& meta,
                      std::unique_ptr<Parked> parked, Thrown thrown) noexcept;
  /// After a successful attempt: breaker and ordering bookkeeping.
  void attempt_succeeded(SubscriberBase& sub, const PublishMeta& meta) noexcept;

  /// Makes sure a subscriber with runnable events has a run on the pool.
  void try_schedule(SubscriberBase& sub);

  /// The transport events are stored in, or null for the in-process bus.
  Transport* transport() const noexcept { return transport_.get(); }
  /// Durable publish: stores one event's envelope (attributes from `meta`, `data` encoded
  /// by its codec) and returns once the transport made it durable.
  void append(const PublishMeta& meta, std::string_view type, std::string data, std::string_view content_type);
  /// Counts `n` publishes of a type that did not go through a snapshot (a batch).
  void count_published(std::uint32_t type_index, std::string_view type_name, std::size_t n);
  /// Durable batch publish: the envelope of one event (a fresh id and time), to be stored
  /// with the others by transport()->append.
  Envelope stored_envelope(std::string_view type, std::string data, std::string_view content_type) const;

  /// Fills a PublishMeta (id, time, correlation, the parent's trace context) for a publish.
  void fill_meta(PublishMeta& meta, const Attributes* attributes, const PublishMeta* parent) const;

  /// Registers a subscriber; throws on a duplicate name for the type or a closed bus.
  void add(std::uint32_t type_index, std::unique_ptr<SubscriberBase> sub, DeliverFn deliver);
  /// Unregisters a subscriber; once it returns, its handler is not running on another
  /// thread and will not be called again. Returns events discarded from its queue.
  std::size_t remove(SubscriberBase* sub) noexcept;

  DrainResult drain(std::chrono::nanoseconds timeout);
  bool flush(std::chrono::nanoseconds timeout);
  MetricsSnapshot metrics() const;
  const std::string& source() const noexcept { return source_; }
  std::chrono::milliseconds drain_timeout() const noexcept { return options_.drain_timeout; }
  Clock& clock() const noexcept { return *clock_; }
  /// True when the calling thread is one of this bus's workers.
  bool on_worker_thread() const noexcept;
  /// True when the calling thread is inside a handler of this bus (async, inline, a retry),
  /// or is one of its workers: waiting for the bus to go quiet there would wait for itself.
  bool inside_own_handler() const noexcept;
  /// True once the worker pool has stopped (after drain).
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }

  // Dead letters.
  std::vector<DeadLetter> dead_letters(const DeadLetterFilter& filter) const;
  std::size_t dead_letter_count(const DeadLetterFilter& filter) const;
  std::size_t redrive(const DeadLetterFilter& filter);
  std::size_t purge(const DeadLetterFilter& filter);

  /// Puts a parked event on the timer; it becomes ready after `delay`.
  void park_for_retry(SubscriberBase& sub, std::unique_ptr<Parked> p, Clock::duration delay);

  /// Runs `fn` on the bus's timer thread at `due` (by the bus's clock).
  void at(Clock::time_point due, std::function<void()> fn);

  /// Called by the pool when a run ends; re-schedules if events arrived meanwhile.
  void run_finished(SubscriberBase& sub);
  void release_ref(SubscriberBase* sub) noexcept;
  /// Tells on_error. Never throws.
  void report(Report::Kind kind, std::string_view subscriber, std::string_view type, std::string_view message,
              int attempt) const noexcept;

 private:
  static constexpr unsigned kChunkBits = 8;
  static constexpr std::uint32_t kChunkMask = (1u << kChunkBits) - 1;
  static constexpr std::size_t kChunks = 256;  // 65,536 event types per process
  static constexpr std::uint32_t kDirect = 256;  // the first types skip the chunk lookup
  struct Chunk {
    std::atomic<Snapshot*> slots[1u << kChunkBits] = {};
  };

  std::atomic<Snapshot*>& slot_of(std::uint32_t type_index);
  void reclaim(bool wait_all);
  // Events left (queued, and if `count_waiting` also on timers or behind keys); `idle` when
  // nothing is left and no run is scheduled.
  std::size_t pending(bool count_waiting, bool& idle) const;
  // Waits until pending() is idle with no run scheduled meanwhile, or the deadline.
  bool wait_quiet(std::chrono::steady_clock::time_point deadline, bool count_waiting, std::size_t& left);
  // Durable, after the feeds stopped: the events every subscriber left in the transport.
  std::size_t durable_backlog();
  void dead_letter(SubscriberBase& sub, std::unique_ptr<Parked> p) noexcept;
  void inherit_trace_context(PublishMeta& meta, const Attributes& parent) const;
  Clock::duration retry_delay(const RetryPolicy& policy, int delayed_retry) const;

  BusOptions options_;
  std::shared_ptr<Transport> transport_;
  std::string source_;
  std::shared_ptr<Clock> clock_;
  std::atomic<Snapshot*> direct_[kDirect] = {};
  std::atomic<Chunk*> chunks_[kChunks] = {};  // chunk 0 unused: its types are direct_

  mutable std::mutex writer_mu_;
  std::vector<SubscriberBase*> subscribers_;      // guarded by writer_mu_
  std::map<std::uint32_t, std::string> type_names_;  // guarded by writer_mu_: for metrics
  std::vector<std::unique_ptr<Retired>> retired_;  // guarded by writer_mu_
  std::unique_ptr<DeadLetterStore> dead_letters_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<TimerService> timers_;  // started on first use
  std::once_flag timers_once_;
  std::atomic<bool> stopped_{false};
  std::atomic<std::uint64_t> schedule_epoch_{0};  // counts runs scheduled: drain's quiescence check
  std::atomic<int> quiet_waiters_{0};  // flush/drain callers waiting for runs to end
  std::mutex quiet_mu_;
  std::condition_variable quiet_cv_;
  friend class WorkerPool;
};

inline bool SubscriberBase::taking() const noexcept {
  return active.load(std::memory_order_relaxed) && !core.stopped();
}

}  // namespace crier::detail
