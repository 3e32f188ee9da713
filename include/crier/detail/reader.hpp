// Read-side of crier's read-copy-update scheme. Internal.
//
// Publishers read an immutable subscriber array with no lock and no shared atomic
// read-modify-write. Each thread owns a ReaderRecord and announces, with plain stores to
// its own cache line:
//   - `state`: the nesting depth of its dispatch sections in the low bits and, above them, a
//     generation that grows each time an outermost section ends (so retired arrays and
//     subscribers are freed only after every section that could see them has ended), and
//   - `running[depth]`, the subscriber whose handler it is about to call or is calling (so
//     unsubscribe can wait for exactly that handler to return, and for nothing else).
// Writers (subscribe, unsubscribe, drain) are rare; they pay with a process-wide heavy
// barrier (Linux membarrier, PRIVATE_EXPEDITED) that orders the readers' plain stores before
// the writer inspects them. Where membarrier is unavailable, readers issue a full fence
// instead (g_reader_fence).
#pragma once

#include <atomic>
#include <cstdint>

#include "crier/error.hpp"
#include "crier/export.hpp"

namespace crier::detail {

/// Deepest nesting of publish calls inside handlers on one thread; deeper is almost always
/// unbounded recursion and fails with Errc::nesting_too_deep.
inline constexpr int kMaxDispatchDepth = 32;

/// Per-thread counters (publishes per event type and bus) live in each ReaderRecord: a thread
/// bumps its own with a plain load and store, and a metrics reader sums over all records. Slot
/// 0 is a sink for counters beyond the last slot.
inline constexpr std::uint32_t kCounterSlots = 4096;

inline constexpr std::uint64_t kDepthMask = 0xff;
inline constexpr std::uint64_t kGeneration = 0x100;

struct alignas(64) ReaderRecord {
  // depth | generation. Written by the owner only; one word, so a publish costs one
  // load-store pair on it (a second word would add a store-to-load chain per publish).
  std::atomic<std::uint64_t> state{0};
  std::atomic<const void*> running[kMaxDispatchDepth] = {};
  const void* worker_of = nullptr;                          // owner only: the bus core whose worker this thread is
  std::uint32_t index = 0;                                  // dense, fixed at creation: picks the thread's queue lanes
  std::atomic<std::uint64_t> counters[kCounterSlots] = {};  // written by the owner only
  // Registry links (guarded by the registry mutex); records are reused, never freed.
  ReaderRecord* next = nullptr;
  std::atomic<bool> in_use{false};
};

/// True when readers must fence themselves (membarrier unavailable). Set once, before the
/// first record is handed out.
CRIER_EXPORT extern bool g_reader_fence;

/// Gives the calling thread its record, registering it on first use.
CRIER_EXPORT ReaderRecord* register_reader();

/// The calling thread's record, or null before its first dispatch section. One variable in
/// the library (not an inline one per shared object), so that every shared library sees the
/// same record; constinit tells the compiler it needs no initialisation wrapper.
CRIER_EXPORT extern constinit thread_local ReaderRecord* tls_reader;

inline ReaderRecord& this_thread_reader() {
  ReaderRecord* r = tls_reader;
  return r ? *r : *register_reader();
}

/// Takes a counter slot (0 when all are taken) / returns one after zeroing it in every record.
/// Call release only when no thread can bump the slot any more.
CRIER_EXPORT std::uint32_t acquire_counter_slot();
CRIER_EXPORT void release_counter_slot(std::uint32_t slot) noexcept;
/// The sum of a slot over every thread.
CRIER_EXPORT std::uint64_t counter_total(std::uint32_t slot) noexcept;

inline void bump_counter(ReaderRecord& r, std::uint32_t slot) noexcept {
  auto& c = r.counters[slot];
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

inline void reader_order_point() noexcept {
  if (g_reader_fence) [[unlikely]]
    std::atomic_thread_fence(std::memory_order_seq_cst);
  else
    std::atomic_signal_fence(std::memory_order_seq_cst);
}

/// One dispatch section on the calling thread (RAII). Nested sections share the outermost
/// one's `seq` announcement and each own one `running` slot.
class ReadSection {
 public:
  ReadSection() : r_(this_thread_reader()), entry_state_(r_.state.load(std::memory_order_relaxed)) {
    const auto depth = static_cast<int>(entry_state_ & kDepthMask);
    if (depth >= kMaxDispatchDepth) [[unlikely]]
      throw Error(Errc::nesting_too_deep, "publish nested inside handlers more than 32 deep");
    r_.state.store(entry_state_ + 1, std::memory_order_relaxed);
    running_ = &r_.running[depth];
    if (depth == 0) reader_order_point();
  }
  ReadSection(const ReadSection&) = delete;
  ReadSection& operator=(const ReadSection&) = delete;
  ~ReadSection() {
    // Release: the handler's accesses happen-before a writer that sees these stores. An
    // outermost section ends by advancing the generation; a nested one restores its parent's
    // state.
    running_->store(nullptr, std::memory_order_release);
    r_.state.store(nested() ? entry_state_ : entry_state_ + kGeneration, std::memory_order_release);
  }

  /// Announces the subscriber about to be called. The caller must then check that the
  /// subscriber is still active before calling it.
  template <bool Fence>
  void enter(const void* subscriber) noexcept {
    running_->store(subscriber, std::memory_order_relaxed);
    if constexpr (Fence)
      std::atomic_thread_fence(std::memory_order_seq_cst);
    else
      std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  void enter(const void* subscriber) noexcept {
    if (fence_) [[unlikely]]
      enter<true>(subscriber);
    else
      enter<false>(subscriber);
  }
  /// True when readers must fence themselves (no membarrier on this system).
  bool fenced() const noexcept { return fence_; }

  ReaderRecord& record() const noexcept { return r_; }
  /// True when this section is nested inside a handler on this thread.
  bool nested() const noexcept { return (entry_state_ & kDepthMask) != 0; }

 private:
  ReaderRecord& r_;
  const std::uint64_t entry_state_;
  std::atomic<const void*>* running_;
  const bool fence_ = g_reader_fence;
};

}  // namespace crier::detail
