// The bus behind the header's BusCore, and the subscriber state behind SubscriberBase: the
// parts of crier that no template needs to see.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.hpp"
#include "crier/dead_letter.hpp"
#include "crier/detail/core.hpp"
#include "crier/metrics.hpp"
#include "crier/options.hpp"
#include "crier/transport.hpp"

namespace crier::detail {

class CoreImpl;
class Feed;

/// What the bus keeps of a subscriber besides what the typed code reads: its policies, the
/// events that wait (ready to run again, on the timer, behind a key), the breaker's state,
/// the durable feed, and the counters only the bus writes.
class SubscriberState {
 public:
  SubscriberState(SubscriberBase& sub, const SubscribeOptions& options, bool wants_meta, MakeParked make_parked,
                  AttemptFn attempt);
  ~SubscriberState();

  SubscriberBase& sub;
  CoreImpl& core;
  const DeliveryMode mode;
  const bool wants_meta;
  const RetryPolicy retry;
  const BreakerPolicy breaker;
  const MakeParked make_parked;
  const AttemptFn attempt_fn;
  const StartFrom start;               // durable: where a new subscriber name starts
  std::uint32_t type_index = 0;        // set by CoreImpl::add
  std::uint64_t published_before = 0;  // inline: the type's publish count when subscribed
  std::unique_ptr<Feed> feed;          // durable: fetches its events from the transport
  Consumer* consumer = nullptr;        // durable: settles events with the transport

  std::atomic<int> refs{1};  // registration + pending runs + timers

  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> dead_lettered{0};
  std::atomic<std::uint64_t> slow_calls{0};
  std::atomic<std::uint64_t> breaker_opened{0};
  std::atomic<std::uint64_t> corrupt{0};
  std::atomic<std::uint64_t> latency_buckets[LatencyHistogram::kBuckets] = {};
  std::atomic<std::uint64_t> latency_count{0};
  std::atomic<std::uint64_t> latency_sum_ns{0};
  std::atomic<std::uint64_t> latency_max_ns{0};
  std::atomic<std::size_t> waiting{0};  // on the timer or behind a key

  /// On a worker: handles up to `max` events, those ready to run again first. Returns how
  /// many it took.
  std::size_t run_batch(std::size_t max);
  /// Events that a run could take now (queue lanes and ready list).
  std::size_t runnable() const noexcept { return sub.lanes_queued() + ready_count_.load(std::memory_order_seq_cst); }
  /// Everything waiting: runnable, on the timer, behind a key.
  std::size_t queued() const noexcept { return runnable() + waiting.load(std::memory_order_relaxed); }
  /// Queues a parked event to be run again by a worker.
  void push_ready(std::unique_ptr<Parked> p);
  /// Runs the attempts of a parked event (a retry, a redrive, a held event's turn).
  void run_parked(std::unique_ptr<Parked> p);
  /// Durable: an event handled and settled, to be destroyed by the feed thread, which made
  /// it and its envelope. A worker freeing what another thread allocated contends with it
  /// for that thread's malloc arena: consuming from NATS cost 5.8 or 10 us of CPU per event
  /// by how the arenas fell (12 us with one arena for all threads), 5.2 us retired.
  void retire(std::unique_ptr<Parked> p) noexcept;
  /// Swaps the retired events into `into` (empty: its storage is kept for the next ones).
  void take_retired(std::vector<std::unique_ptr<Parked>>& into);
  /// Ordered subscribers: marks a key busy (its event failed and waits).
  void ordered_block(std::string_view key);
  /// Durable: an event this subscriber cannot read (damaged in the store, or its time or data
  /// not in a form it reads) goes to the dead letters at once, with `reason`, for retrying
  /// will not make it readable; nothing else is held up. `attempts`: those that failed before.
  void dead_letter_unreadable(const Envelope& envelope, std::unique_ptr<Lease> lease, int attempts,
                              const std::string& reason, bool damaged) noexcept;
  /// Stores `letter` through the consumer; returns its id. When the transport cannot, says so
  /// (Report::Kind::transport_failed) and returns nullopt: the event stays in the transport,
  /// which hands it out again.
  std::optional<std::uint64_t> store_dead_letter(std::unique_ptr<Lease> lease, const DeadLetter& letter) noexcept;
  /// Decodes an event a transport delivered (Parked::decode); one that does not decode is
  /// dead-lettered, and false returned.
  bool decoded(Parked& p) noexcept;

  // Circuit breaker.
  bool admits_runs() const noexcept;
  /// Counts a failure; returns true when the breaker is (now) open.
  bool breaker_failure();
  void breaker_half_open();
  BreakerState breaker_state() const noexcept { return sub.breaker_state_.load(std::memory_order_acquire); }

  /// observe_latency(), and adds the call to the handler time (one call, not a batch).
  void observe_handler_time(std::chrono::nanoseconds d) noexcept;

  // Durable subscribers' feed: started after registration, stopped at unsubscribe or drain.
  void start_feed();
  void stop_feed() noexcept;
  /// True while the transport holds events not yet queued here.
  bool source_pending();
  /// The transport's count of events this subscriber has not finished.
  std::uint64_t source_backlog() noexcept;

 private:
  friend class SubscriberBase;
  void breaker_success_slow() noexcept;

  Mutex ready_mu_;
  std::deque<std::unique_ptr<Parked>> ready_ CRIER_GUARDED_BY(ready_mu_);
  std::atomic<std::size_t> ready_count_{0};

  Mutex keys_mu_;
  std::map<std::string, std::deque<std::unique_ptr<Parked>>, std::less<>> keys_ CRIER_GUARDED_BY(keys_mu_);

  std::atomic<int> consecutive_failures_{0};
  std::atomic<bool> probe_in_flight_{false};
  Mutex window_mu_;
  std::vector<bool> window_;  // last attempts' outcomes (true: failed), guarded by window_mu_
  std::size_t window_next_ = 0;

  Mutex retired_mu_;
  std::vector<std::unique_ptr<Parked>> retired_ CRIER_GUARDED_BY(retired_mu_);  // see retire()

  Mutex space_mu_;  // with space_cv_: publishers waiting for room in the queue
  CondVar space_cv_;
};

inline SubscriberState& state_of(SubscriberBase& sub) noexcept { return sub.state(); }

class WorkerPool;
class TimerService;
class DeadLetterStore;
struct Retired;

/// Everything a Bus owns. Thread-safe: publish paths read the snapshot table without locks;
/// writers (subscribe, unsubscribe, drain) serialise on `writer_mu_`.
class CoreImpl final : public BusCore {
 public:
  CoreImpl(BusOptions options, std::shared_ptr<Transport> transport);
  ~CoreImpl();

  /// The CoreImpl behind a BusCore (every BusCore is one).
  static CoreImpl& of(BusCore& core) noexcept { return static_cast<CoreImpl&>(core); }
  static const CoreImpl& of(const BusCore& core) noexcept { return static_cast<const CoreImpl&>(core); }

  const Snapshot& first_publish(std::uint32_t type_index, std::string_view type_name);
  void refuse_if_closed(bool nested_in_handler) const;
  bool on_worker_thread() const noexcept;
  void attempt_failed(SubscriberBase& sub, int attempt, const void* event, const PublishMeta& meta,
                      std::unique_ptr<Parked> parked, Thrown thrown) noexcept;
  void try_schedule(SubscriberBase& sub);
  void store(std::uint32_t type_index, std::string_view type, std::span<std::string> data,
             std::string_view content_type, const Attributes* attributes, const PublishMeta* parent);
  void fill_meta(PublishMeta& meta, const Attributes* attributes, const PublishMeta* parent) const;
  void add(std::uint32_t type_index, std::unique_ptr<SubscriberBase> sub, DeliverFn deliver,
           MakeDelivered make_delivered);

  /// After a successful attempt of a parked event: breaker and ordering bookkeeping, and the
  /// transport told (its lease, when a transport delivered it).
  void attempt_succeeded(SubscriberBase& sub, Parked& parked) noexcept;
  /// The transport events are stored in, or null for the in-process bus.
  Transport* transport() const noexcept { return transport_.get(); }
  /// Unregisters a subscriber; once it returns, its handler is not running on another
  /// thread and will not be called again. Returns events discarded from its queue.
  std::size_t remove(SubscriberBase* sub) noexcept;

  DrainResult drain(std::chrono::nanoseconds timeout);
  bool flush(std::chrono::nanoseconds timeout);
  MetricsSnapshot metrics() const;
  const std::string& source() const noexcept { return source_; }
  std::chrono::milliseconds drain_timeout() const noexcept { return options_.drain_timeout; }
  /// True when the calling thread is inside a handler of this bus (async, inline, a retry),
  /// or is one of its workers: waiting for the bus to go quiet there would wait for itself.
  bool inside_own_handler() const noexcept;

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
  /// Publishes a BreakerChanged for `sub` (not for its own subscribers). Never throws.
  void announce_breaker(const SubscriberBase& sub, BreakerState state, const std::string& reason) noexcept;
  /// Tells on_error. Never throws.
  void report(Report::Kind kind, std::string_view subscriber, std::string_view type, std::string_view message,
              int attempt) const noexcept;

 private:
  std::atomic<Snapshot*>& slot_of(std::uint32_t type_index);
  void reclaim(bool wait_all) CRIER_REQUIRES(writer_mu_);
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
  void count_published(std::uint32_t type_index, std::string_view type_name, std::size_t n);

  BusOptions options_;
  std::shared_ptr<Transport> transport_;
  std::string source_;
  std::shared_ptr<Clock> clock_owner_;

  mutable Mutex writer_mu_;
  std::vector<SubscriberBase*> subscribers_ CRIER_GUARDED_BY(writer_mu_);
  std::map<std::uint32_t, std::string> type_names_ CRIER_GUARDED_BY(writer_mu_);  // for metrics
  std::vector<std::unique_ptr<Retired>> retired_ CRIER_GUARDED_BY(writer_mu_);
  std::unique_ptr<DeadLetterStore> dead_letters_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<TimerService> timers_;  // started on first use
  std::once_flag timers_once_;
  std::shared_ptr<void> health_watch_;            // the transport's link changes, to on_error
  std::atomic<std::uint64_t> schedule_epoch_{0};  // counts runs scheduled: drain's quiescence check
  std::atomic<int> quiet_waiters_{0};             // flush/drain callers waiting for runs to end
  Mutex quiet_mu_;
  CondVar quiet_cv_;
  friend class WorkerPool;
};

}  // namespace crier::detail
