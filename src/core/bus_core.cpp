#include "crier/detail/core.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>

#include "crier/error.hpp"
#include "crier/event.hpp"
#include "rcu.hpp"
#include "worker_pool.hpp"

namespace crier::detail {

// Something unpublished but possibly still read by a dispatch section: freed once the
// sections open at retirement have ended.
struct Retired {
  Grace grace;
  Snapshot* snapshot = nullptr;
  SubscriberBase* sub = nullptr;
};

namespace {

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

std::string default_source() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  return "/crier/" + std::string(host) + "/" + std::to_string(getpid());
}

}  // namespace

SubscriberBase::SubscriberBase(BusCore& c, std::string n, std::string_view type, const SubscribeOptions& o,
                               bool meta)
    : core(c), name(std::move(n)), event_type(type), mode(o.mode), concurrency(o.concurrency), wants_meta(meta) {}
SubscriberBase::~SubscriberBase() = default;
std::size_t SubscriberBase::run_batch(std::size_t) { return 0; }
std::size_t SubscriberBase::queued() const noexcept { return 0; }
void SubscriberBase::wake_blocked_publishers() noexcept {}

BusCore::BusCore(BusOptions options)
    : options_(std::move(options)), source_(options_.source.empty() ? default_source() : options_.source) {
  unsigned threads = options_.worker_threads ? options_.worker_threads : std::thread::hardware_concurrency();
  pool_ = std::make_unique<WorkerPool>(*this, std::max(1u, threads));
}

BusCore::~BusCore() {
  stopped_.store(true, std::memory_order_release);
  pool_->stop_and_join();
  // No dispatch section of this bus can be open now: destroying a bus while publishing on
  // it is a contract violation. Free everything.
  std::lock_guard lock(writer_mu_);
  reclaim(true);
  for (SubscriberBase* sub : subscribers_) release_ref(sub);
  for (auto& slot : direct_) free_snapshot(slot.load(std::memory_order_relaxed));
  for (auto& chunk : chunks_) {
    Chunk* c = chunk.load(std::memory_order_relaxed);
    if (c == nullptr) continue;
    for (auto& slot : c->slots) free_snapshot(slot.load(std::memory_order_relaxed));
    delete c;
  }
}

bool BusCore::on_worker_thread() const noexcept {
  const ReaderRecord* r = tls_reader;
  return r != nullptr && r->worker_of == this;
}

void BusCore::refuse_if_closed(bool nested_in_handler) const {
  if (stopped() || !nested_in_handler)
    throw Error(Errc::bus_closed, "publish on a bus that is draining or drained (source " + source_ + ")");
}

void BusCore::fill_meta(PublishMeta& meta, const Attributes* attributes, const PublishMeta* parent) const {
  meta.id = Uuid::v7();
  meta.time = std::chrono::system_clock::now();
  meta.correlation_id = parent ? parent->correlation_id : meta.id;
  if (parent) meta.causation_id = parent->id;
  if (attributes) meta.attributes = std::make_shared<const Attributes>(*attributes);
}

void BusCore::report(std::string_view subscriber, std::string_view type, std::string_view message,
                     int attempt) const noexcept {
  if (!options_.on_error) return;
  try {
    options_.on_error(HandlerFailure{subscriber, type, message, attempt});
  } catch (...) {
    // The hook must not throw; if it does, the failure it reported is still counted.
  }
}

void BusCore::handler_failed(SubscriberBase& sub, int attempt) noexcept {
  sub.failed.fetch_add(1, std::memory_order_relaxed);
  if (!options_.on_error) return;
  try {
    try {
      throw;
    } catch (const std::exception& e) {
      report(sub.name, sub.event_type, e.what(), attempt);
    } catch (...) {
      report(sub.name, sub.event_type, "handler threw an exception not derived from std::exception", attempt);
    }
  } catch (...) {
  }
}

void BusCore::delivery_failed(SubscriberBase& sub) {
  if (sub.mode == DeliveryMode::Async) throw;
  handler_failed(sub, 1);
}

void BusCore::try_schedule(SubscriberBase& sub) {
  int r = sub.runners.load(std::memory_order_seq_cst);
  for (;;) {
    if (r >= sub.concurrency || static_cast<std::size_t>(r) >= sub.queued() || stopped() ||
        !sub.active.load(std::memory_order_relaxed))
      return;
    if (sub.runners.compare_exchange_weak(r, r + 1, std::memory_order_seq_cst)) break;
  }
  sub.refs.fetch_add(1, std::memory_order_relaxed);
  schedule_epoch_.fetch_add(1, std::memory_order_relaxed);
  pool_->submit(&sub);
}

void BusCore::run_finished(SubscriberBase& sub) {
  sub.runners.fetch_sub(1, std::memory_order_seq_cst);
  // A publisher may have pushed after our last look and seen us still running: after the
  // barrier, either we see its push or it sees our decrement.
  heavy_barrier();
  if (sub.queued() != 0) try_schedule(sub);
  if (draining_.load(std::memory_order_acquire)) {
    std::lock_guard lock(drain_mu_);
    drain_cv_.notify_all();
  }
  release_ref(&sub);
}

void BusCore::release_ref(SubscriberBase* sub) noexcept {
  if (sub->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete sub;
}

void BusCore::add(std::uint32_t type_index, std::unique_ptr<SubscriberBase> sub, DeliverFn deliver) {
  std::lock_guard lock(writer_mu_);
  if (closed.load(std::memory_order_relaxed))
    throw Error(Errc::bus_closed, "subscribe '" + sub->name + "' on a bus that is draining or drained");
  for (const SubscriberBase* s : subscribers_)
    if (s->event_type == sub->event_type && s->name == sub->name)
      throw Error(Errc::invalid_argument,
                  "subscriber '" + sub->name + "' is already subscribed to " + std::string(sub->event_type));
  auto& slot = slot_of(type_index);
  Snapshot* old = slot.load(std::memory_order_relaxed);
  const std::uint32_t n = old ? old->count : 0;
  Snapshot* next = make_snapshot(n + 1);
  if (old) std::copy_n(old->entries(), n, next->entries());
  next->entries()[n] = Entry{deliver, sub.get()};
  next->needs_meta = (old && old->needs_meta) || sub->wants_meta;
  sub->type_index = type_index;
  subscribers_.push_back(sub.get());
  slot.store(next, std::memory_order_release);
  sub.release();
  if (old) {
    heavy_barrier();
    retired_.push_back(std::make_unique<Retired>(Retired{Grace::capture(true), old, nullptr}));
  }
  reclaim(false);
}

std::atomic<Snapshot*>& BusCore::slot_of(std::uint32_t type_index) {
  if (type_index < kDirect) return direct_[type_index];
  auto& chunk_slot = chunks_[type_index >> kChunkBits];
  Chunk* chunk = chunk_slot.load(std::memory_order_relaxed);
  if (chunk == nullptr) {
    chunk = new Chunk;
    chunk_slot.store(chunk, std::memory_order_release);
  }
  return chunk->slots[type_index & kChunkMask];
}

std::size_t BusCore::remove(SubscriberBase* sub) noexcept {
  {
    std::lock_guard lock(writer_mu_);
    auto it = std::find(subscribers_.begin(), subscribers_.end(), sub);
    if (it == subscribers_.end()) return 0;
    subscribers_.erase(it);
    sub->active.store(false, std::memory_order_seq_cst);
    auto& slot = slot_of(sub->type_index);
    Snapshot* old = slot.load(std::memory_order_relaxed);
    Snapshot* next = nullptr;
    if (old->count > 1) {
      next = make_snapshot(old->count - 1);
      Entry* out = next->entries();
      for (std::uint32_t i = 0; i < old->count; ++i) {
        const Entry& e = old->entries()[i];
        if (e.sub == sub) continue;
        *out++ = e;
        next->needs_meta = next->needs_meta || e.sub->wants_meta;
      }
    }
    slot.store(next, std::memory_order_release);
    heavy_barrier();
    retired_.push_back(std::make_unique<Retired>(Retired{Grace::capture(true), old, nullptr}));
  }
  // Outside the lock: the handler we wait for may itself subscribe or unsubscribe.
  wait_until_not_running(sub);
  const std::size_t discarded = sub->queued();
  if (discarded != 0)
    report(sub->name, sub->event_type,
           "unsubscribed with " + std::to_string(discarded) + " events still queued; they were discarded", 0);
  std::lock_guard lock(writer_mu_);
  heavy_barrier();
  retired_.push_back(std::make_unique<Retired>(Retired{Grace::capture(true), nullptr, sub}));
  reclaim(false);
  return discarded;
}

void BusCore::reclaim(bool all) {
  std::erase_if(retired_, [&](const std::unique_ptr<Retired>& r) {
    if (!all && !r->grace.passed()) return false;
    free_snapshot(r->snapshot);
    if (r->sub) release_ref(r->sub);
    return true;
  });
}

DrainResult BusCore::drain(std::chrono::nanoseconds timeout) {
  if (on_worker_thread())
    throw Error(Errc::would_deadlock, "drain() called from a handler running on this bus's workers");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  closed.store(true, std::memory_order_seq_cst);
  // Publishes that began before they could see `closed` finish first.
  heavy_barrier();
  Grace::capture(false).wait_until(deadline);

  auto queued_total = [this](bool& idle) {
    std::size_t total = 0;
    idle = true;
    std::lock_guard lock(writer_mu_);
    for (const SubscriberBase* s : subscribers_) {
      total += s->queued();
      if (s->runners.load(std::memory_order_seq_cst) != 0) idle = false;
    }
    if (total != 0) idle = false;
    return total;
  };

  bool idle = false;
  std::size_t left = 0;
  if (!stopped()) {
    draining_.store(true, std::memory_order_release);
    std::unique_lock lock(drain_mu_);
    for (;;) {
      const auto before = schedule_epoch_.load(std::memory_order_acquire);
      left = queued_total(idle);
      if (idle && before == schedule_epoch_.load(std::memory_order_acquire)) break;
      if (drain_cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        left = queued_total(idle);
        break;
      }
    }
    lock.unlock();
    stopped_.store(true, std::memory_order_release);  // runs end after their current batch
    if (!idle)
      report("", "", "drain deadline passed with " + std::to_string(left) +
                         " events queued; waiting for running handlers to return", 0);
    pool_->stop_and_join();
    draining_.store(false, std::memory_order_release);
  }
  left = queued_total(idle);
  std::lock_guard lock(writer_mu_);
  for (SubscriberBase* s : subscribers_) s->wake_blocked_publishers();
  return DrainResult{left == 0, left};
}

std::vector<SubscriberStats> BusCore::stats() const {
  std::vector<SubscriberStats> out;
  std::lock_guard lock(writer_mu_);
  out.reserve(subscribers_.size());
  for (const SubscriberBase* s : subscribers_) {
    out.push_back(SubscriberStats{s->name, std::string(s->event_type), s->mode,
                                  s->delivered.load(std::memory_order_relaxed), s->failed.load(std::memory_order_relaxed),
                                  s->queued(), std::chrono::nanoseconds(s->busy_ns.load(std::memory_order_relaxed))});
  }
  return out;
}

}  // namespace crier::detail
