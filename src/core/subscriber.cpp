// The transport-independent half of a subscriber: events that wait to run again, key
// ordering, the circuit breaker and latency accounting.
#include <algorithm>
#include <bit>
#include <new>

#include "common/error_text.hpp"
#include "core_impl.hpp"
#include "crier/detail/core.hpp"
#include "crier/detail/reader.hpp"
#include "crier/policy.hpp"
#include "feed.hpp"

namespace crier::detail {

SubscriberBase::SubscriberBase(BusCore& c, std::string n, std::string_view type, const SubscribeOptions& o, bool meta,
                               MakeParked make, AttemptFn attempt)
    : core(c),
      name(std::move(n)),
      event_type(type),
      concurrency(o.concurrency),
      has_breaker(o.breaker.consecutive_failures > 0 || o.breaker.failure_rate > 0),
      ordering(o.ordering),
      overflow(o.overflow),
      block_timeout(o.block_timeout),
      handler_budget(o.handler_budget),
      state_(std::make_unique<SubscriberState>(*this, o, meta, make, attempt)) {}

SubscriberBase::~SubscriberBase() = default;

std::size_t SubscriberBase::run_lanes(std::size_t) { return 0; }
std::size_t SubscriberBase::lanes_queued() const noexcept { return 0; }

SubscriberState::SubscriberState(SubscriberBase& s, const SubscribeOptions& o, bool meta, MakeParked make,
                                 AttemptFn attempt)
    : sub(s),
      core(CoreImpl::of(s.core)),
      mode(o.mode),
      wants_meta(meta),
      retry(o.retry),
      breaker(o.breaker),
      make_parked(make),
      attempt_fn(attempt),
      start(o.start) {
  if (breaker.failure_rate > 0) window_.assign(static_cast<std::size_t>(std::max(1, breaker.window)), false);
}

// The feed first: its thread takes retired events (members destroyed before `feed` is).
SubscriberState::~SubscriberState() { feed.reset(); }

void too_many_publishers(const std::string& subscriber, std::uint32_t lanes) {
  throw Error(Errc::invalid_argument,
              "more than " + std::to_string(lanes) + " threads publish at once to subscriber '" + subscriber + "'");
}

void SubscriberBase::wait_for_room(bool own_worker, std::size_t capacity, bool (*try_push)(void*), void* context) {
  auto full = [&](const char* why) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    return Error(Errc::queue_full, "subscriber '" + name + "' of " + std::string(event_type) + ": " + why + " (" +
                                       std::to_string(capacity) + " events per publishing thread)");
  };
  if (own_worker) throw full("published to its own full queue: waiting would deadlock");
  if (overflow == Overflow::reject) throw full("queue full");
  blocked_publishers_.fetch_add(1, std::memory_order_relaxed);
  struct Leave {
    std::atomic<int>& w;
    ~Leave() { w.fetch_sub(1, std::memory_order_relaxed); }
  } leave{blocked_publishers_};
  const auto deadline = std::chrono::steady_clock::now() + block_timeout;
  SubscriberState& st = state();
  MutexLock lock(st.space_mu_);
  for (;;) {
    if (try_push(context)) return;
    if (core.stopped()) throw Error(Errc::bus_closed, "subscriber '" + name + "' stopped while its queue was full");
    core.try_schedule(*this);
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) throw full("queue stayed full past the publish deadline");
    st.space_cv_.wait_until(st.space_mu_, std::min(deadline, now + std::chrono::milliseconds(1)));
  }
}

void SubscriberBase::wake_blocked_publishers() noexcept {
  MutexLock lock(state_->space_mu_);
  state_->space_cv_.notify_all();
}

std::size_t SubscriberState::run_batch(std::size_t max) {
  std::size_t n = 0;
  // Parked events first: they are older than anything in the lanes.
  while (n < max && ready_count_.load(std::memory_order_relaxed) != 0) {
    if (!sub.taking()) return n;  // unsubscribed, or drain's deadline passed: the rest stays counted
    std::unique_ptr<Parked> p;
    {
      MutexLock lock(ready_mu_);
      if (ready_.empty()) break;
      if (!sub.breaker_allows()) return n;
      p = std::move(ready_.front());
      ready_.pop_front();
      ready_count_.fetch_sub(1, std::memory_order_relaxed);
    }
    ++n;
    run_parked(std::move(p));
  }
  if (n < max && sub.taking()) n += sub.run_lanes(max - n);
  return n;
}

void SubscriberState::retire(std::unique_ptr<Parked> p) noexcept {
  MutexLock lock(retired_mu_);
  try {
    retired_.push_back(std::move(p));
  } catch (const std::bad_alloc&) {
    // Destroyed here instead.
  }
}

void SubscriberState::take_retired(std::vector<std::unique_ptr<Parked>>& into) {
  MutexLock lock(retired_mu_);
  into.swap(retired_);
}

void SubscriberState::push_ready(std::unique_ptr<Parked> p) {
  MutexLock lock(ready_mu_);
  ready_.push_back(std::move(p));
  ready_count_.fetch_add(1, std::memory_order_seq_cst);
}

void SubscriberState::run_parked(std::unique_ptr<Parked> p) {
  if (!decoded(*p)) {
    // Dead-lettered: the key it may hold goes to the next event.
    if (sub.ordering == Ordering::ordered && p->owns_key) sub.ordered_done(p->meta.partition_key());
    return;
  }
  if (sub.ordering == Ordering::ordered && !p->owns_key) {
    const std::string_view key = p->meta.partition_key();
    MutexLock lock(keys_mu_);
    auto it = keys_.find(key);
    if (it != keys_.end()) {  // its key is busy: wait behind it
      it->second.push_back(std::move(p));
      waiting.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (sub.concurrency > 1) keys_.try_emplace(std::string(key));
  }
  Parked* raw = p.get();
  const int attempt = raw->next_attempt;
  if (attempt > 1) retried.fetch_add(1, std::memory_order_relaxed);
  const auto t0 = core.clock().now();
  try {
    attempt_fn(sub, raw->event(), raw->meta, attempt);
    observe_handler_time(core.clock().now() - t0);
    sub.delivered.fetch_add(1, std::memory_order_relaxed);
    core.attempt_succeeded(sub, *raw);
  } catch (const std::exception& e) {
    observe_handler_time(core.clock().now() - t0);
    core.attempt_failed(sub, attempt, raw->event(), raw->meta, std::move(p), Thrown::of(e));
  } catch (...) {
    observe_handler_time(core.clock().now() - t0);
    core.attempt_failed(sub, attempt, raw->event(), raw->meta, std::move(p), Thrown::unknown());
  }
  if (p && feed) retire(std::move(p));  // handled (a failed one went on): made by the feed thread
}

bool SubscriberState::decoded(Parked& p) noexcept {
  std::string reason;
  try {
    p.decode();
    return true;
  } catch (const std::exception& e) {
    reason = "could not decode the event's data: " + message_of(e);
  } catch (...) {
    reason = "could not decode the event's data: its decoder threw an exception not derived from std::exception";
  }
  dead_letter_unreadable(*p.meta.stored, std::move(p.lease), p.attempts, reason, false);
  return false;
}

void SubscriberState::observe_handler_time(std::chrono::nanoseconds d) noexcept {
  sub.busy_ns.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count())), std::memory_order_relaxed);
  sub.observe_latency(d);
}

bool SubscriberBase::ordered_admit(const void* event, const PublishMeta& meta) {
  const std::string_view key = meta.partition_key();
  MutexLock lock(state_->keys_mu_);
  auto it = state_->keys_.find(key);
  if (it != state_->keys_.end()) {
    it->second.push_back(state_->make_parked(event, meta));
    state_->waiting.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (concurrency > 1) state_->keys_.try_emplace(std::string(key));  // in flight: later ones wait
  return true;
}

void SubscriberState::ordered_block(std::string_view key) {
  MutexLock lock(keys_mu_);
  keys_.try_emplace(std::string(key));
}

void SubscriberBase::ordered_done(std::string_view key) {
  std::unique_ptr<Parked> next;
  {
    MutexLock lock(state_->keys_mu_);
    auto it = state_->keys_.find(key);
    if (it == state_->keys_.end()) return;
    if (it->second.empty()) {
      state_->keys_.erase(it);
      return;
    }
    next = std::move(it->second.front());
    it->second.pop_front();
    state_->waiting.fetch_sub(1, std::memory_order_relaxed);
  }
  next->owns_key = true;  // the key stays taken: it is this event's turn
  state_->push_ready(std::move(next));
  core.try_schedule(*this);
}

bool SubscriberBase::breaker_probe() noexcept {
  return breaker_state_.load(std::memory_order_acquire) == BreakerState::half_open &&
         !state_->probe_in_flight_.exchange(true, std::memory_order_acq_rel);
}

bool SubscriberState::admits_runs() const noexcept {
  const BreakerState s = sub.breaker_state_.load(std::memory_order_acquire);
  return s == BreakerState::closed ||
         (s == BreakerState::half_open && !probe_in_flight_.load(std::memory_order_acquire));
}

void SubscriberBase::breaker_success() noexcept {
  SubscriberState& st = state();
  if (st.consecutive_failures_.load(std::memory_order_relaxed) == 0 &&
      breaker_state_.load(std::memory_order_relaxed) == BreakerState::closed && st.breaker.failure_rate <= 0)
    return;
  st.breaker_success_slow();
}

void SubscriberState::breaker_success_slow() noexcept {
  consecutive_failures_.store(0, std::memory_order_relaxed);
  bool closed_now = false;
  {
    MutexLock lock(window_mu_);
    if (!window_.empty()) {
      window_[window_next_ % window_.size()] = false;
      ++window_next_;
    }
    if (sub.breaker_state_.load(std::memory_order_relaxed) == BreakerState::half_open) {
      sub.breaker_state_.store(BreakerState::closed, std::memory_order_release);
      probe_in_flight_.store(false, std::memory_order_release);
      std::fill(window_.begin(), window_.end(), false);
      window_next_ = 0;
      closed_now = true;
    }
  }
  if (closed_now) {
    core.report(Report::Kind::breaker_closed, sub.name, sub.event_type, "probe succeeded: circuit closed", 0);
    core.announce_breaker(sub, BreakerState::closed, "probe succeeded: circuit closed");
    core.try_schedule(sub);
  }
}

bool SubscriberState::breaker_failure() {
  if (!sub.has_breaker) return false;
  const int consecutive = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  std::string why;
  {
    MutexLock lock(window_mu_);
    const BreakerState s = sub.breaker_state_.load(std::memory_order_relaxed);
    bool trip = false;
    if (!window_.empty()) {
      window_[window_next_ % window_.size()] = true;
      ++window_next_;
    }
    if (s == BreakerState::open) return true;
    if (s == BreakerState::half_open) {
      trip = true;
      why = "probe failed: circuit open again";
    } else if (breaker.consecutive_failures > 0 && consecutive >= breaker.consecutive_failures) {
      trip = true;
      why = "circuit opened after " + std::to_string(consecutive) + " consecutive failures";
    } else if (!window_.empty() && window_next_ >= window_.size()) {
      const auto failures = static_cast<double>(std::count(window_.begin(), window_.end(), true));
      if (failures / static_cast<double>(window_.size()) >= breaker.failure_rate) {
        trip = true;
        why = "circuit opened: " + std::to_string(static_cast<int>(failures)) + " of the last " +
              std::to_string(window_.size()) + " attempts failed";
      }
    }
    if (!trip) return false;
    sub.breaker_state_.store(BreakerState::open, std::memory_order_release);
    probe_in_flight_.store(false, std::memory_order_release);
  }
  breaker_opened.fetch_add(1, std::memory_order_relaxed);
  core.report(Report::Kind::breaker_opened, sub.name, sub.event_type, why, 0);
  core.announce_breaker(sub, BreakerState::open, why);
  refs.fetch_add(1, std::memory_order_relaxed);  // the timer holds us
  struct Cooldown {                              // dropped unrun (the bus stopped), it still returns our reference
    explicit Cooldown(SubscriberState* s) : st(s) {}
    Cooldown(const Cooldown&) = delete;
    Cooldown& operator=(const Cooldown&) = delete;
    SubscriberState* st;
    bool fired = false;
    ~Cooldown() {
      if (!fired) st->core.release_ref(&st->sub);
    }
  };
  auto hold = std::make_shared<Cooldown>(this);
  core.at(core.clock().now() + breaker.cooldown, [hold] {
    hold->fired = true;
    hold->st->breaker_half_open();
    hold->st->core.release_ref(&hold->st->sub);
  });
  return true;
}

void SubscriberState::breaker_half_open() {
  {
    MutexLock lock(window_mu_);
    if (sub.breaker_state_.load(std::memory_order_relaxed) != BreakerState::open) return;
    probe_in_flight_.store(false, std::memory_order_release);
    sub.breaker_state_.store(BreakerState::half_open, std::memory_order_release);
  }
  core.report(Report::Kind::breaker_half_open, sub.name, sub.event_type, "cool-down over: trying one probe event", 0);
  core.try_schedule(sub);
}

void SubscriberBase::observe_latency(std::chrono::nanoseconds d) noexcept {
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count()));
  const int bucket = std::min(static_cast<int>(std::bit_width(ns)), LatencyHistogram::kBuckets - 1);
  state_->latency_buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  state_->latency_count.fetch_add(1, std::memory_order_relaxed);
  state_->latency_sum_ns.fetch_add(ns, std::memory_order_relaxed);
  std::uint64_t max = state_->latency_max_ns.load(std::memory_order_relaxed);
  while (ns > max && !state_->latency_max_ns.compare_exchange_weak(max, ns, std::memory_order_relaxed)) {
  }
  if (handler_budget.count() > 0 && d > handler_budget) {
    state_->slow_calls.fetch_add(1, std::memory_order_relaxed);
    try {
      state_->core.report(Report::Kind::slow_handler, name, event_type,
                          "handler took " + std::to_string(d.count() / 1000000) + " ms, over its budget of " +
                              std::to_string(handler_budget.count() / 1000000) + " ms",
                          0);
    } catch (...) {  // out of memory for the message: the count stands
    }
  }
}

void SubscriberState::start_feed() {
  if (feed) feed->start();
}

void SubscriberState::stop_feed() noexcept {
  if (feed) feed->stop();
}

bool SubscriberState::source_pending() { return feed && feed->pending(); }

std::uint64_t SubscriberState::source_backlog() noexcept { return feed ? feed->backlog() : 0; }

}  // namespace crier::detail
