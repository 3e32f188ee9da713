// A bounded single-producer single-consumer ring: one lane of an async subscriber's queue.
// Internal.
//
// The producer touches only `head_` (and a cached copy of `tail_`), the consumer only `tail_`:
// no atomic read-modify-write on either side, so a publish costs a few plain stores. Storage
// is allocated once; push and pop never allocate.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

namespace crier::detail {

template <class T>
class Lane {
 public:
  explicit Lane(std::size_t capacity_pow2) : mask_(capacity_pow2 - 1), slots_(new Slot[capacity_pow2]) {}
  ~Lane() {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    for (std::uint64_t t = tail_.load(std::memory_order_relaxed); t != h; ++t) at(t).~T();
  }
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  /// Producer only: the position the next push will take.
  std::uint64_t next_position() const noexcept { return head_.load(std::memory_order_relaxed); }

  /// Producer only: constructs an element at the back; false when full.
  template <class... A>
  bool try_push(A&&... args) {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    if (h - cached_tail_ > mask_) {
      cached_tail_ = tail_.load(std::memory_order_acquire);
      if (h - cached_tail_ > mask_) return false;
    }
    ::new (static_cast<void*>(slots_[h & mask_].storage)) T(std::forward<A>(args)...);
    head_.store(h + 1, std::memory_order_release);
    return true;
  }

  /// Consumer only: the positions [first, first + n) ready to be taken, n <= max.
  std::size_t ready(std::size_t max, std::uint64_t& first) const noexcept {
    first = tail_.load(std::memory_order_relaxed);
    const std::uint64_t n = head_.load(std::memory_order_acquire) - first;
    return static_cast<std::size_t>(n < max ? n : max);
  }
  /// Consumer only: the element at a ready position.
  T& at(std::uint64_t pos) noexcept { return *std::launder(reinterpret_cast<T*>(slots_[pos & mask_].storage)); }
  /// Consumer only: hands the slots before `new_tail` (their elements destroyed) back.
  void release_until(std::uint64_t new_tail) noexcept { tail_.store(new_tail, std::memory_order_release); }

  /// Any thread: elements pushed and not yet released (a snapshot).
  std::size_t size() const noexcept {
    const std::uint64_t t = tail_.load(std::memory_order_acquire);
    return static_cast<std::size_t>(head_.load(std::memory_order_acquire) - t);
  }

  /// Set while a run consumes this lane (subscribers with concurrency > 1).
  std::atomic<bool> busy{false};

 private:
  struct Slot {
    alignas(T) unsigned char storage[sizeof(T)];
  };

  alignas(64) std::atomic<std::uint64_t> head_{0};
  std::uint64_t cached_tail_ = 0;  // producer's last view of tail_
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  alignas(64) const std::uint64_t mask_;
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace crier::detail
