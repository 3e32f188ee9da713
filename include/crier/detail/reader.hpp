// Read-side of crier's read-copy-update scheme. Internal.
//
// Publishers read an immutable subscriber array with no lock and no shared atomic
// read-modify-write. Each thread owns a ReaderRecord and announces, with plain stores to
// its own cache line:
//   - `seq` odd while it is inside a dispatch section (so retired arrays and subscribers are
//     freed only after every section that could see them has ended), and
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

struct alignas(64) ReaderRecord {
  std::atomic<std::uint64_t> seq{0};  // odd: inside a section. Written by the owner only.
  int depth = 0;                      // owner only
  std::atomic<const void*> running[kMaxDispatchDepth] = {};
  const void* worker_of = nullptr;  // owner only: the bus core whose worker this thread is
  // Registry links (guarded by the registry mutex); records are reused, never freed.
  ReaderRecord* next = nullptr;
  std::atomic<bool> in_use{false};
};

/// True when readers must fence themselves (membarrier unavailable). Set once, before the
/// first record is handed out.
CRIER_EXPORT extern bool g_reader_fence;

/// Gives the calling thread its record, registering it on first use.
CRIER_EXPORT ReaderRecord* register_reader();

inline thread_local ReaderRecord* tls_reader = nullptr;

inline ReaderRecord& this_thread_reader() {
  ReaderRecord* r = tls_reader;
  return r ? *r : *register_reader();
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
  ReadSection() : r_(this_thread_reader()), depth_(r_.depth) {
    if (depth_ >= kMaxDispatchDepth) [[unlikely]]
      throw Error(Errc::nesting_too_deep, "publish nested inside handlers more than 32 deep");
    ++r_.depth;
    if (depth_ == 0) {
      r_.seq.store(r_.seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      reader_order_point();
    }
  }
  ReadSection(const ReadSection&) = delete;
  ReadSection& operator=(const ReadSection&) = delete;
  ~ReadSection() {
    // Release: the handler's accesses happen-before a writer that sees these stores.
    r_.running[depth_].store(nullptr, std::memory_order_release);
    if (depth_ == 0) r_.seq.store(r_.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    --r_.depth;
  }

  /// Announces the subscriber about to be called. The caller must then check that the
  /// subscriber is still active before calling it.
  void enter(const void* subscriber) noexcept {
    r_.running[depth_].store(subscriber, std::memory_order_relaxed);
    reader_order_point();
  }

  ReaderRecord& record() const noexcept { return r_; }
  /// True when this section is nested inside a handler on this thread.
  bool nested() const noexcept { return depth_ > 0; }

 private:
  ReaderRecord& r_;
  int depth_;
};

}  // namespace crier::detail
