#include "worker_pool.hpp"
#include "common/thread_name.hpp"
#include "core_impl.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <latch>

#include "crier/detail/core.hpp"
#include "crier/detail/reader.hpp"

namespace crier::detail {

namespace {
// Events a run takes from its queue at once: one claim, one counter update, one clock read.
constexpr std::size_t kBatch = 256;
// How long a run whose queue ran dry keeps watching it before giving its thread back. A
// publisher that keeps up a steady stream then never pays for a wake-up.
constexpr auto kLinger = std::chrono::microseconds(50);
// A batch in which at least one attempt in this many failed counts as failing.
constexpr std::uint64_t kFailingRatio = 16;

// Lowers the calling thread (not the process) to the weakest CPU share Linux gives a
// normal thread. Raising it back would need privileges, so the background thread keeps it.
void lower_priority() noexcept { ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19); }
}  // namespace

void ReadyQueue::push(SubscriberBase* sub) {
  if (size_ == ring_.size()) {
    std::vector<SubscriberBase*> bigger(ring_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) % ring_.size()];
    ring_.swap(bigger);
    head_ = 0;
  }
  ring_[(head_ + size_) % ring_.size()] = sub;
  ++size_;
}

SubscriberBase* ReadyQueue::pop() noexcept {
  SubscriberBase* sub = ring_[head_];
  head_ = (head_ + 1) % ring_.size();
  --size_;
  return sub;
}

WorkerPool::WorkerPool(CoreImpl& core, unsigned threads) : core_(core) {
  threads_.reserve(threads + 1);
  for (unsigned i = 0; i < threads; ++i)
    threads_.emplace_back([this] {
      name_this_thread("crier-worker");
      loop(Tier::normal);
    });
  std::latch lowered(1);  // the bus starts with its threads as they will stay
  threads_.emplace_back([this, &lowered] {
    name_this_thread("crier-bg-worker");
    lower_priority();
    lowered.count_down();
    loop(Tier::background);
  });
  lowered.wait();
}

WorkerPool::~WorkerPool() { stop_and_join(); }

void WorkerPool::submit(SubscriberBase* sub, Tier tier) {
  Queue& q = queue(tier);
  bool wake;
  {
    MutexLock lock(mu_);
    q.ready.push(sub);
    q.count.fetch_add(1, std::memory_order_relaxed);
    wake = q.idle > 0;
  }
  if (wake) q.cv.notify_one();
}

void WorkerPool::stop_and_join() {
  std::vector<SubscriberBase*> abandoned;
  {
    MutexLock lock(mu_);
    if (stop_ && threads_.empty()) return;
    stop_ = true;
  }
  normal_.cv.notify_all();
  background_.cv.notify_all();
  for (auto& t : threads_) {
    if (t.get_id() == std::this_thread::get_id())
      t.detach();  // the bus is being destroyed from one of its own handlers
    else if (t.joinable())
      t.join();
  }
  threads_.clear();
  {
    MutexLock lock(mu_);
    for (Queue* q : {&normal_, &background_}) {
      while (!q->ready.empty()) abandoned.push_back(q->ready.pop());
      q->count.store(0, std::memory_order_relaxed);
    }
  }
  for (SubscriberBase* sub : abandoned) {
    sub->runners.fetch_sub(1, std::memory_order_seq_cst);
    core_.release_ref(sub);
  }
}

void WorkerPool::loop(Tier tier) {
  this_thread_reader().worker_of = &core_;
  Queue& q = queue(tier);
  MutexLock lock(mu_);
  for (;;) {
    if (q.ready.empty()) {
      if (stop_) break;
      ++q.idle;
      while (!stop_ && q.ready.empty()) q.cv.wait(mu_);
      --q.idle;
      continue;
    }
    if (stop_) break;
    SubscriberBase* sub = q.ready.pop();
    q.count.fetch_sub(1, std::memory_order_relaxed);
    lock.unlock();
    run(sub, tier);
    lock.lock();
  }
  this_thread_reader().worker_of = nullptr;
}

void WorkerPool::run(SubscriberBase* sub, Tier tier) {
  const std::atomic<std::size_t>& others = queue(tier).count;
  for (;;) {
    if (core_.stopped()) break;  // runs under way end after their current batch
    std::size_t n = 0;
    const std::uint64_t failed_before = sub->state().failed.load(std::memory_order_relaxed);
    {
      ReadSection section;
      section.enter(sub);
      if (sub->active.load(std::memory_order_relaxed)) n = sub->state().run_batch(kBatch);
    }
    const std::uint64_t failures = sub->state().failed.load(std::memory_order_relaxed) - failed_before;
    const Tier belongs = failures != 0 && failures * kFailingRatio >= n ? Tier::background : Tier::normal;
    if (n > 0 && belongs != tier) {
      submit(sub, belongs);  // keeping our runner count
      return;
    }
    if (n == kBatch) {
      if (others.load(std::memory_order_relaxed) == 0) continue;
      submit(sub, tier);  // others are waiting: go to the back, keeping our runner count
      return;
    }
    if (n > 0) {
      // A short batch means we caught up with the publishers: reading the slot they are
      // writing would bounce its cache line between the cores for every event. Give them
      // a moment to fill whole lines.
      if (n < kBatch / 4)
        for (int i = 0; i < 64; ++i) __builtin_ia32_pause();
      continue;
    }
    // The queue looks empty (or the breaker holds it): linger briefly while nobody else needs
    // this thread. Each look pulls the publishers' cache lines over, so look less often the
    // longer it stays empty.
    if (sub->active.load(std::memory_order_relaxed) && sub->state().admits_runs() &&
        others.load(std::memory_order_relaxed) == 0) {
      const auto until = std::chrono::steady_clock::now() + kLinger;
      bool more = false;
      for (unsigned pauses = 16;; pauses = std::min(pauses * 2, 512u)) {
        for (unsigned i = 0; i < pauses; ++i) __builtin_ia32_pause();
        if (sub->state().runnable() != 0 || !sub->state().admits_runs()) {
          more = sub->state().admits_runs();
          break;
        }
        if (std::chrono::steady_clock::now() >= until || others.load(std::memory_order_relaxed) != 0) break;
      }
      if (more) continue;
    }
    break;
  }
  core_.run_finished(*sub);
}

}  // namespace crier::detail
