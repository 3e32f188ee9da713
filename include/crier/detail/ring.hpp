// A bounded multi-producer multi-consumer ring (D. Vyukov's per-slot sequence design) with
// bulk claiming for consumers. Internal.
//
// Producers claim a slot with one CAS on `head_`; consumers claim a run of ready slots with
// one CAS on `tail_`, so a batch of 256 costs one atomic read-modify-write. Storage is
// allocated once; enqueue and dequeue never allocate.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

namespace crier::detail {

template <class T>
class Ring {
 public:
  explicit Ring(std::size_t capacity_pow2)
      : mask_(capacity_pow2 - 1), slots_(new Slot[capacity_pow2]) {
    for (std::size_t i = 0; i < capacity_pow2; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
  }
  ~Ring() {
    std::uint64_t t = tail_.load(std::memory_order_relaxed);
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    for (; t != h; ++t) {
      Slot& s = slots_[t & mask_];
      if (s.seq.load(std::memory_order_relaxed) == t + 1) s.ptr()->~T();
    }
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  std::size_t capacity() const noexcept { return mask_ + 1; }

  /// Constructs an element at the back; false when the ring is full. The claim is a
  /// seq_cst read-modify-write, which callers rely on to order it before later loads.
  template <class... A>
  bool try_emplace(A&&... args) {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    Slot* s;
    for (;;) {
      s = &slots_[pos & mask_];
      const std::uint64_t seq = s->seq.load(std::memory_order_acquire);
      const auto dif = static_cast<std::int64_t>(seq - pos);
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_seq_cst, std::memory_order_relaxed))
          break;
      } else if (dif < 0) {
        return false;
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
    ::new (static_cast<void*>(s->storage)) T(std::forward<A>(args)...);
    s->seq.store(pos + 1, std::memory_order_release);
    return true;
  }

  /// Claims up to `max` consecutive ready elements; returns how many, the first at `first`.
  /// The caller must take() each claimed position, in any order.
  std::size_t claim(std::size_t max, std::uint64_t& first) {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      std::size_t n = 0;
      while (n < max && slots_[(pos + n) & mask_].seq.load(std::memory_order_acquire) == pos + n + 1) ++n;
      if (n == 0) return 0;
      if (tail_.compare_exchange_weak(pos, pos + n, std::memory_order_acq_rel, std::memory_order_relaxed)) {
        first = pos;
        return n;
      }
    }
  }

  /// The element at a claimed position.
  T& at(std::uint64_t pos) noexcept { return *slots_[pos & mask_].ptr(); }

  /// Destroys the element at a claimed position and frees its slot for producers.
  void release(std::uint64_t pos) noexcept {
    Slot& s = slots_[pos & mask_];
    s.ptr()->~T();
    s.seq.store(pos + mask_ + 1, std::memory_order_release);
  }

  /// Elements claimed by producers and not yet by consumers (a snapshot). seq_cst loads, so
  /// that a consumer's earlier seq_cst store is ordered before it (see AsyncSubscriber).
  std::size_t size() const noexcept {
    const std::uint64_t t = tail_.load(std::memory_order_seq_cst);
    const std::uint64_t h = head_.load(std::memory_order_seq_cst);
    return h > t ? static_cast<std::size_t>(h - t) : 0;
  }

 private:
  struct Slot {
    std::atomic<std::uint64_t> seq;
    alignas(T) unsigned char storage[sizeof(T)];
    T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::atomic<std::uint64_t> tail_{0};
  alignas(64) const std::uint64_t mask_;
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace crier::detail
