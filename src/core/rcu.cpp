#include "rcu.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>
#include <thread>

#include "common/mutex.hpp"

namespace crier::detail {

bool g_reader_fence = false;
constinit thread_local ReaderRecord* tls_reader = nullptr;

namespace {

Mutex registry_mu;
ReaderRecord* registry_head = nullptr;  // guarded by registry_mu for insertion; never shrinks
std::atomic<ReaderRecord*> registry_published{nullptr};
bool membarrier_ok = false;

void init_barrier_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    const long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    membarrier_ok = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
                    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    g_reader_fence = !membarrier_ok;
  });
}

// Returns the record to the pool when its thread exits.
struct RecordOwner {
  ReaderRecord* record = nullptr;
  ~RecordOwner() {
    if (record == nullptr) return;
    tls_reader = nullptr;
    record->worker_of = nullptr;
    record->in_use.store(false, std::memory_order_release);
  }
};
thread_local RecordOwner tls_owner;

// Backs off from spinning to yielding to short sleeps: writers wait for other threads'
// handlers, which may run for a long time.
class Backoff {
 public:
  void pause() noexcept {
    if (n_ < 64) {
      __builtin_ia32_pause();
    } else if (n_ < 128) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    ++n_;
  }

 private:
  unsigned n_ = 0;
};

template <class F>
void for_each_record(F&& f) {
  for (ReaderRecord* r = registry_published.load(std::memory_order_acquire); r != nullptr; r = r->next) f(*r);
}

}  // namespace

ReaderRecord* register_reader() {
  init_barrier_once();
  ReaderRecord* mine = nullptr;
  {
    MutexLock lock(registry_mu);
    for (ReaderRecord* r = registry_head; r != nullptr; r = r->next) {
      bool expected = false;
      if (r->in_use.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
        mine = r;
        break;
      }
    }
    if (mine == nullptr) {
      mine = new ReaderRecord;  // lives for the process: writers may be scanning it
      mine->index = registry_head ? registry_head->index + 1 : 0;
      mine->in_use.store(true, std::memory_order_relaxed);
      mine->next = registry_head;
      registry_head = mine;
      registry_published.store(mine, std::memory_order_release);
    }
  }
  tls_owner.record = mine;
  tls_reader = mine;
  return mine;
}

namespace {
Mutex slots_mu;
std::vector<std::uint32_t> free_slots;  // guarded by slots_mu
std::uint32_t next_slot = 1;            // guarded by slots_mu; slot 0 is the sink
}  // namespace

std::uint32_t acquire_counter_slot() {
  MutexLock lock(slots_mu);
  if (!free_slots.empty()) {
    const std::uint32_t s = free_slots.back();
    free_slots.pop_back();
    return s;
  }
  return next_slot < kCounterSlots ? next_slot++ : 0;
}

void release_counter_slot(std::uint32_t slot) noexcept {
  if (slot == 0) return;
  for_each_record([&](ReaderRecord& r) { r.counters[slot].store(0, std::memory_order_relaxed); });
  MutexLock lock(slots_mu);
  free_slots.push_back(slot);
}

std::uint64_t counter_total(std::uint32_t slot) noexcept {
  std::uint64_t total = 0;
  for_each_record([&](const ReaderRecord& r) { total += r.counters[slot].load(std::memory_order_relaxed); });
  return total;
}

void heavy_barrier() noexcept {
  init_barrier_once();
  if (membarrier_ok) {
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

void wait_until_not_running(const void* subscriber) noexcept {
  const ReaderRecord* self = tls_reader;
  for_each_record([&](const ReaderRecord& r) {
    if (&r == self) return;
    for (const auto& slot : r.running) {
      Backoff backoff;
      while (slot.load(std::memory_order_acquire) == subscriber) backoff.pause();
    }
  });
}

Grace Grace::capture(bool include_self) {
  Grace g;
  const ReaderRecord* self = include_self ? nullptr : tls_reader;
  for_each_record([&](const ReaderRecord& r) {
    if (&r == self) return;
    const std::uint64_t s = r.state.load(std::memory_order_acquire);
    if (s & kDepthMask) g.open_.emplace_back(&r, s);
  });
  return g;
}

bool Grace::passed() const noexcept {
  // Within one outermost section the state can return to a captured value (nested sections
  // restore it); once that section ends the generation has moved on for good.
  for (const auto& [record, state] : open_)
    if (record->state.load(std::memory_order_acquire) == state) return false;
  return true;
}

bool Grace::wait_until(std::chrono::steady_clock::time_point deadline) const noexcept {
  Backoff backoff;
  while (!passed()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    backoff.pause();
  }
  return true;
}

}  // namespace crier::detail
