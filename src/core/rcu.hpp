// Writer side of the read-copy-update scheme whose read side is detail/reader.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

#include "crier/detail/reader.hpp"

namespace crier::detail {

/// Orders every reader's earlier plain stores before the caller's later loads, process-wide
/// (membarrier PRIVATE_EXPEDITED; a plain fence when readers fence themselves).
void heavy_barrier() noexcept;

/// Waits until no other thread is calling, or about to call, `subscriber`. Call after the
/// subscriber's `active` flag was cleared and heavy_barrier() ran. The calling thread's own
/// record is skipped: a handler may unsubscribe itself.
void wait_until_not_running(const void* subscriber) noexcept;

/// The dispatch sections under way at one moment. Once each has ended (passed()), nothing
/// retired before the capture can still be read.
class Grace {
 public:
  /// Captures the sections under way now. Call after heavy_barrier(). For reclaiming
  /// memory include the calling thread (its own outer section may still read what it
  /// retires); to wait for other threads, leave it out (it cannot end while we wait in it).
  static Grace capture(bool include_self);
  /// True when every captured section has ended.
  bool passed() const noexcept;
  /// Waits (yielding, then sleeping briefly) until passed() or the deadline.
  bool wait_until(std::chrono::steady_clock::time_point deadline) const noexcept;

 private:
  std::vector<std::pair<const ReaderRecord*, std::uint64_t>> open_;
};

}  // namespace crier::detail
