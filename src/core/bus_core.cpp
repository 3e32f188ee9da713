#include "core_impl.hpp"

#include <algorithm>
#include <new>
#include <thread>

#include "common/utf8.hpp"
#include "crier/error.hpp"
#include "crier/event.hpp"
#include "dead_letters.hpp"
#include "envelope_build.hpp"
#include "feed.hpp"
#include "rcu.hpp"
#include "timers.hpp"
#include "worker_pool.hpp"

namespace crier::detail {

const PublishMeta kNoMeta{};

// Something unpublished but possibly still read by a dispatch section: freed once the
// sections open at retirement have ended.
struct Retired {
  Grace grace;
  Snapshot* snapshot = nullptr;
  SubscriberBase* sub = nullptr;
};

namespace {

thread_local std::exception_ptr tls_publish_error;

Snapshot* make_snapshot(std::uint32_t count) {
  void* mem = ::operator new(sizeof(Snapshot) + count * sizeof(Entry));
  auto* s = new (mem) Snapshot;
  s->count = count;
  return s;
}

void free_snapshot(Snapshot* s) noexcept {
  if (s == nullptr) return;
  s->~Snapshot();
  ::operator delete(s);
}

}  // namespace

CoreImpl::CoreImpl(BusOptions options, std::shared_ptr<Transport> transport)
    : BusCore(options.clock ? *options.clock : *Clock::system(), transport != nullptr),
      options_(std::move(options)),
      transport_(std::move(transport)),
      source_(options_.source.empty() ? default_source() : options_.source),
      clock_owner_(options_.clock ? options_.clock : Clock::system()),
      dead_letters_(std::make_unique<DeadLetterStore>(options_.dead_letter_capacity)) {
  if (const auto problem = utf8_problem(source_); !problem.empty())  // it goes into every event
    throw Error(Errc::invalid_argument, "BusOptions::source " + problem);
  unsigned threads = options_.worker_threads ? options_.worker_threads : std::thread::hardware_concurrency();
  pool_ = std::make_unique<WorkerPool>(*this, std::max(1u, threads));
  if (transport_)
    health_watch_ = transport_->watch([this](bool connected, std::string_view what) {
      report(connected ? Report::Kind::connection_restored : Report::Kind::connection_lost, {}, {}, what, 0);
    });
}

CoreImpl::~CoreImpl() {
  health_watch_.reset();  // no report of the transport's may reach a bus being torn down
  stopped_.store(true, std::memory_order_release);
  pool_->stop_and_join();
  if (timers_) timers_->stop();  // drops waiting retries, returning their references
  // No dispatch section of this bus can be open now: destroying a bus while publishing on
  // it is a contract violation. Free everything.
  MutexLock lock(writer_mu_);
  reclaim(true);
  for (SubscriberBase* sub : subscribers_) release_ref(sub);
  auto free_slot = [](std::atomic<Snapshot*>& slot) {
    if (Snapshot* s = slot.load(std::memory_order_relaxed)) {
      release_counter_slot(s->published_slot);
      free_snapshot(s);
    }
  };
  for (auto& slot : direct_) free_slot(slot);
  for (auto& chunk : chunks_) {
    Chunk* c = chunk.load(std::memory_order_relaxed);
    if (c == nullptr) continue;
    for (auto& slot : c->slots) free_slot(slot);
    delete c;
  }
}

void CoreImpl::at(Clock::time_point due, std::function<void()> fn) {
  std::call_once(timers_once_, [this] { timers_ = std::make_unique<TimerService>(*clock_); });
  timers_->at(due, std::move(fn));
}

void hold_publish_error() noexcept {
  if (!tls_publish_error) tls_publish_error = std::current_exception();
}

void rethrow_publish_error() {
  std::exception_ptr e = std::exchange(tls_publish_error, nullptr);
  std::rethrow_exception(e);
}

bool CoreImpl::on_worker_thread() const noexcept {
  const ReaderRecord* r = tls_reader;
  return r != nullptr && r->worker_of == this;
}

bool CoreImpl::inside_own_handler() const noexcept {
  const ReaderRecord* r = tls_reader;
  if (r == nullptr) return false;
  if (r->worker_of == this) return true;
  // An inline handler runs on the publisher's thread: its open sections name the subscribers
  // being called, which stay alive while those sections are open.
  const auto depth = static_cast<int>(r->state.load(std::memory_order_relaxed) & kDepthMask);
  for (int i = 0; i < depth; ++i) {
    const auto* sub = static_cast<const SubscriberBase*>(r->running[i].load(std::memory_order_relaxed));
    if (sub != nullptr && &sub->core == this) return true;
  }
  return false;
}

void CoreImpl::refuse_if_closed(bool nested_in_handler) const {
  if (stopped() || !nested_in_handler)
    throw Error(Errc::bus_closed, "publish on a bus that is draining or drained (source " + source_ + ")");
}

void CoreImpl::fill_meta(PublishMeta& meta, const Attributes* attributes, const PublishMeta* parent) const {
  meta.id = Uuid::v7();
  meta.time = clock_->wall_now();  // the bus's clock, like every other timestamp it makes
  meta.correlation_id = parent ? parent->correlation_id : meta.id;
  if (parent) meta.causation_id = parent->id;
  if (attributes) meta.attributes = std::make_shared<const Attributes>(*attributes);
  if (parent && parent->attributes) inherit_trace_context(meta, *parent->attributes);
}

void CoreImpl::inherit_trace_context(PublishMeta& meta, const Attributes& parent) const {
  // An event published from a handler belongs to the trace of the event being handled, as
  // OpenTelemetry's propagators carry a context: the same traceparent (trace id and parent
  // span) and tracestate, unless the publisher set its own.
  auto has = [](const Attributes* a, std::string_view name) {
    return a && std::any_of(a->extensions.begin(), a->extensions.end(), [&](const auto& x) { return x.first == name; });
  };
  std::shared_ptr<Attributes> merged;
  for (const auto& [name, value] : parent.extensions) {
    if ((name != "traceparent" && name != "tracestate") || has(meta.attributes.get(), name)) continue;
    if (name == "tracestate" && has(meta.attributes.get(), "traceparent")) continue;  // another trace's state
    if (!merged)
      merged = meta.attributes ? std::make_shared<Attributes>(*meta.attributes) : std::make_shared<Attributes>();
    merged->extensions.emplace_back(name, value);
  }
  if (merged) meta.attributes = std::move(merged);
}

void CoreImpl::store(std::uint32_t type_index, std::string_view type, std::span<std::string> data,
                     std::string_view content_type, const Attributes* attributes, const PublishMeta* parent) {
  auto envelope_of = [&](std::string& d) {
    PublishMeta meta;
    fill_meta(meta, attributes, parent);
    Envelope e = build_envelope(meta, source_, type);
    e.datacontenttype = std::string(content_type);
    e.data = std::move(d);
    return e;
  };
  if (data.size() == 1) {  // a single publish: no vector to allocate
    const Envelope e = envelope_of(data[0]);
    transport_->append(std::span<const Envelope>(&e, 1));
  } else {
    std::vector<Envelope> envelopes;
    envelopes.reserve(data.size());
    for (std::string& d : data) envelopes.push_back(envelope_of(d));
    transport_->append(envelopes);
  }
  count_published(type_index, type, data.size());
}

void CoreImpl::count_published(std::uint32_t type_index, std::string_view type_name, std::size_t n) {
  const Snapshot* snap = snapshot(type_index);
  if (snap == nullptr) snap = &first_publish(type_index, type_name);
  auto& c = this_thread_reader().counters[snap->published_slot];
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

void CoreImpl::report(Report::Kind kind, std::string_view subscriber, std::string_view type, std::string_view message,
                      int attempt) const noexcept {
  if (!options_.on_error) return;
  try {
    options_.on_error(Report{kind, subscriber, type, message, attempt});
  } catch (...) {
    // The hook must not throw; if it does, what it reported is still counted.
  }
}

void CoreImpl::try_schedule(SubscriberBase& sub) {
  int r = sub.runners.load(std::memory_order_seq_cst);
  for (;;) {
    if (r >= sub.concurrency || static_cast<std::size_t>(r) >= sub.state().runnable() || stopped() ||
        !sub.active.load(std::memory_order_relaxed) || !sub.state().admits_runs())
      return;
    if (sub.runners.compare_exchange_weak(r, r + 1, std::memory_order_seq_cst)) break;
  }
  sub.state().refs.fetch_add(1, std::memory_order_relaxed);
  schedule_epoch_.fetch_add(1, std::memory_order_relaxed);
  pool_->submit(&sub);
}

void CoreImpl::run_finished(SubscriberBase& sub) {
  sub.runners.fetch_sub(1, std::memory_order_seq_cst);
  // A publisher may have pushed after our last look and seen us still running: after the
  // barrier, either we see its push or it sees our decrement.
  heavy_barrier();
  if (sub.state().runnable() != 0) try_schedule(sub);
  if (quiet_waiters_.load(std::memory_order_seq_cst) != 0) {
    MutexLock lock(quiet_mu_);
    quiet_cv_.notify_all();
  }
  release_ref(&sub);
}

void CoreImpl::release_ref(SubscriberBase* sub) noexcept {
  if (sub->state().refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete sub;
}

const Snapshot& CoreImpl::first_publish(std::uint32_t type_index, std::string_view type_name) {
  MutexLock lock(writer_mu_);
  auto& slot = slot_of(type_index);
  if (const Snapshot* existing = slot.load(std::memory_order_acquire)) return *existing;
  Snapshot* s = make_snapshot(0);
  s->published_slot = acquire_counter_slot();
  s->durable = s->needs_meta = transport_ != nullptr;
  type_names_.emplace(type_index, std::string(type_name));
  slot.store(s, std::memory_order_release);
  return *s;
}

void CoreImpl::add(std::uint32_t type_index, std::unique_ptr<SubscriberBase> sub, DeliverFn deliver,
                   MakeDelivered make_delivered) {
  SubscriberState& st = sub->state();
  if (transport_)  // fed by the transport: publishes never see it
    st.feed = std::make_unique<Feed>(*sub,
                                     transport_->consume(ConsumerSpec{sub->name, std::string(sub->event_type), st.start,
                                                                      sub->ordering == Ordering::ordered}),
                                     make_delivered);
  SubscriberBase* raw = sub.get();
  {
    MutexLock lock(writer_mu_);
    if (closed.load(std::memory_order_relaxed))
      throw Error(Errc::bus_closed, "subscribe '" + sub->name + "' on a bus that is draining or drained");
    for (const SubscriberBase* s : subscribers_)
      if (s->event_type == sub->event_type && s->name == sub->name)
        throw Error(Errc::invalid_argument,
                    "subscriber '" + sub->name + "' is already subscribed to " + std::string(sub->event_type));
    type_names_.emplace(type_index, std::string(sub->event_type));
    st.type_index = type_index;
    if (transport_) {
      subscribers_.push_back(sub.release());
    } else {
      auto& slot = slot_of(type_index);
      Snapshot* old = slot.load(std::memory_order_relaxed);
      const std::uint32_t n = old ? old->count : 0;
      Snapshot* next = make_snapshot(n + 1);
      if (old) std::copy_n(old->entries(), n, next->entries());
      next->entries()[n] = Entry{deliver, sub.get()};
      next->needs_meta = (old && old->needs_meta) || st.wants_meta;
      next->published_slot = old ? old->published_slot : acquire_counter_slot();
      st.published_before = counter_total(next->published_slot);
      subscribers_.push_back(sub.get());
      slot.store(next, std::memory_order_release);
      sub.release();
      if (old) {
        heavy_barrier();
        retired_.push_back(std::make_unique<Retired>(Retired{Grace::capture(true), old, nullptr}));
      }
      reclaim(false);
      return;
    }
  }
  try {
    st.start_feed();
  } catch (...) {
    remove(raw);
    throw;
  }
}

std::atomic<Snapshot*>& CoreImpl::slot_of(std::uint32_t type_index) {
  if (type_index < kDirect) return direct_[type_index];
  auto& chunk_slot = chunks_[type_index >> kChunkBits];
  Chunk* chunk = chunk_slot.load(std::memory_order_relaxed);
  if (chunk == nullptr) {
    chunk = new Chunk;
    chunk_slot.store(chunk, std::memory_order_release);
  }
  return chunk->slots[type_index & kChunkMask];
}

std::size_t CoreImpl::remove(SubscriberBase* sub) noexcept {
  {
    MutexLock lock(writer_mu_);
    auto it = std::find(subscribers_.begin(), subscribers_.end(), sub);
    if (it == subscribers_.end()) return 0;
    subscribers_.erase(it);
    sub->active.store(false, std::memory_order_seq_cst);
    if (!sub->state().consumer) {  // durable subscribers are in no snapshot
      auto& slot = slot_of(sub->state().type_index);
      Snapshot* old = slot.load(std::memory_order_relaxed);
      Snapshot* next = make_snapshot(old->count - 1);
      next->published_slot = old->published_slot;
      Entry* out = next->entries();
      for (std::uint32_t i = 0; i < old->count; ++i) {
        const Entry& e = old->entries()[i];
        if (e.sub == sub) continue;
        *out++ = e;
        next->needs_meta = next->needs_meta || e.sub->state().wants_meta;
      }
      slot.store(next, std::memory_order_release);
      heavy_barrier();
      retired_.push_back(std::make_unique<Retired>(Retired{Grace::capture(true), old, nullptr}));
    }
  }
  // Outside the lock: the handler we wait for may itself subscribe or unsubscribe.
  wait_until_not_running(sub);
  // A durable subscriber's unsettled events go back to the transport: nothing is discarded.
  sub->state().stop_feed();
  const std::size_t discarded = sub->state().consumer ? 0 : sub->state().queued();
  if (discarded != 0)
    report(Report::Kind::events_discarded, sub->name, sub->event_type,
           "unsubscribed with " + std::to_string(discarded) + " events still queued; they were discarded", 0);
  MutexLock lock(writer_mu_);
  heavy_barrier();
  retired_.push_back(std::make_unique<Retired>(Retired{Grace::capture(true), nullptr, sub}));
  reclaim(false);
  return discarded;
}

void CoreImpl::reclaim(bool all) {
  std::erase_if(retired_, [&](const std::unique_ptr<Retired>& r) {
    if (!all && !r->grace.passed()) return false;
    free_snapshot(r->snapshot);
    if (r->sub) release_ref(r->sub);
    return true;
  });
}

std::size_t CoreImpl::pending(bool count_waiting, bool& idle) const {
  std::size_t total = 0;
  idle = true;
  MutexLock lock(writer_mu_);
  for (SubscriberBase* s : subscribers_) {
    // Runners first: a run ends (run_finished) after it settled its events, so once none runs,
    // what the runs queued or settled is all there for the looks below (a durable source
    // commits what was settled when asked whether it is caught up). A run that starts after
    // this look changes the schedule epoch, which the caller compares.
    if (s->runners.load(std::memory_order_seq_cst) != 0) idle = false;
    // Without count_waiting, what waits for an open breaker waits: it is not pending.
    total += count_waiting ? s->state().queued() : (s->state().admits_runs() ? s->state().runnable() : 0);
    if (s->state().source_pending()) ++total;
  }
  if (total != 0) idle = false;
  return total;
}

std::size_t CoreImpl::durable_backlog() {
  // The consumers are closed: whatever this bus held went back to the transport, which now
  // counts every event left, once.
  std::vector<SubscriberBase*> subs;
  {
    MutexLock lock(writer_mu_);
    subs = subscribers_;
  }
  std::uint64_t total = 0;
  for (SubscriberBase* s : subs) total += s->state().source_backlog();
  return static_cast<std::size_t>(total);
}

bool CoreImpl::wait_quiet(std::chrono::steady_clock::time_point deadline, bool count_waiting, std::size_t& left) {
  bool idle = false;
  quiet_waiters_.fetch_add(1, std::memory_order_seq_cst);
  MutexLock lock(quiet_mu_);
  for (;;) {
    // Nothing left and no run scheduled while we looked: quiet.
    const auto before = schedule_epoch_.load(std::memory_order_seq_cst);
    left = pending(count_waiting, idle);
    if (idle && before == schedule_epoch_.load(std::memory_order_seq_cst)) break;
    // Durable subscribers' feeds do not signal: look again every few milliseconds.
    const auto until =
        transport_ ? std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(5)) : deadline;
    if (stopped() || (!quiet_cv_.wait_until(quiet_mu_, until) && until == deadline)) {
      left = pending(count_waiting, idle);
      break;
    }
  }
  quiet_waiters_.fetch_sub(1, std::memory_order_relaxed);
  return idle;
}

bool CoreImpl::flush(std::chrono::nanoseconds timeout) {
  if (inside_own_handler())
    throw Error(Errc::would_deadlock, "flush() called from a handler of this bus: it would wait for itself");
  std::size_t left = 0;
  return wait_quiet(std::chrono::steady_clock::now() + timeout, false, left);
}

DrainResult CoreImpl::drain(std::chrono::nanoseconds timeout) {
  if (inside_own_handler())
    throw Error(Errc::would_deadlock, "drain() called from a handler of this bus: it would wait for itself");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  closed.store(true, std::memory_order_seq_cst);
  // Publishes that began before they could see `closed` finish first.
  heavy_barrier();
  Grace::capture(false).wait_until(deadline);

  bool idle = false;
  std::size_t left = 0;
  if (!stopped()) {
    idle = wait_quiet(deadline, true, left);
    stopped_.store(true, std::memory_order_release);  // runs end after their current event
    if (!idle)
      report(Report::Kind::drain_deadline, "", "",
             "drain deadline passed with " + std::to_string(left) +
                 " events queued or waiting for a retry; waiting for running handlers to return",
             0);
    pool_->stop_and_join();
    if (transport_) {
      // Once the handlers returned, so every event they finished is settled: what is left
      // goes back to the transport, for the next start, and it counts exactly that.
      std::vector<SubscriberBase*> subs;
      {
        MutexLock lock(writer_mu_);
        subs = subscribers_;
      }
      for (SubscriberBase* s : subs) s->state().stop_feed();
    }
    // Durable: nothing is lost; what this bus did not finish waits in the transport. In
    // process: what is queued, counted with the timers halted (a retry moving from its timer
    // to its queue meanwhile could be counted twice or not at all), before they go (their
    // retries are left undelivered).
    if (timers_) timers_->halt();
    if (transport_)
      left = idle ? 0 : durable_backlog();
    else
      left = pending(true, idle);
    if (timers_) timers_->stop();
  } else {
    left = transport_ ? durable_backlog() : pending(true, idle);
  }
  MutexLock lock(writer_mu_);
  for (SubscriberBase* s : subscribers_) s->wake_blocked_publishers();
  return DrainResult{left == 0, left};
}

// The header's BusCore calls, on the CoreImpl every BusCore is.
const Snapshot& BusCore::first_publish(std::uint32_t type_index, std::string_view type_name) {
  return CoreImpl::of(*this).first_publish(type_index, type_name);
}
void BusCore::refuse_if_closed(bool nested_in_handler) const {
  CoreImpl::of(*this).refuse_if_closed(nested_in_handler);
}
bool BusCore::on_worker_thread() const noexcept { return CoreImpl::of(*this).on_worker_thread(); }
void BusCore::attempt_failed(SubscriberBase& sub, int attempt, const void* event, const PublishMeta& meta,
                             std::unique_ptr<Parked> parked, Thrown thrown) noexcept {
  CoreImpl::of(*this).attempt_failed(sub, attempt, event, meta, std::move(parked), thrown);
}
void BusCore::try_schedule(SubscriberBase& sub) { CoreImpl::of(*this).try_schedule(sub); }
void BusCore::store(std::uint32_t type_index, std::string_view type, std::span<std::string> data,
                    std::string_view content_type, const Attributes* attributes, const PublishMeta* parent) {
  CoreImpl::of(*this).store(type_index, type, data, content_type, attributes, parent);
}
void BusCore::fill_meta(PublishMeta& meta, const Attributes* attributes, const PublishMeta* parent) const {
  CoreImpl::of(*this).fill_meta(meta, attributes, parent);
}
void BusCore::add(std::uint32_t type_index, std::unique_ptr<SubscriberBase> sub, DeliverFn deliver,
                  MakeDelivered make_delivered) {
  CoreImpl::of(*this).add(type_index, std::move(sub), deliver, make_delivered);
}

}  // namespace crier::detail
