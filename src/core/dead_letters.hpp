// The in-process store of dead letters: bounded, oldest evicted first (and counted).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "common/mutex.hpp"
#include "crier/dead_letter.hpp"
#include "crier/detail/core.hpp"

namespace crier::detail {

class DeadLetterStore {
 public:
  struct Entry {
    DeadLetter letter;
    std::unique_ptr<Parked> event;  // the typed event, for redrive
  };

  explicit DeadLetterStore(std::size_t capacity) : capacity_(capacity) {}

  /// Keeps an entry (evicting the oldest when full); returns its id.
  std::uint64_t add(Entry entry);
  std::vector<DeadLetter> list(const DeadLetterFilter& filter) const;
  std::size_t count(const DeadLetterFilter& filter) const;
  /// Removes and returns the matching entries.
  std::vector<Entry> take(const DeadLetterFilter& filter);
  /// Puts entries back (redrive found no subscriber for them), keeping their ids.
  void restore(std::vector<Entry> entries);
  std::size_t size() const;
  std::uint64_t evicted() const;

 private:
  static bool matches(const DeadLetterFilter& f, const DeadLetter& d) noexcept;

  const std::size_t capacity_;
  mutable Mutex mu_;
  std::deque<Entry> entries_ CRIER_GUARDED_BY(mu_);  // oldest first
  std::uint64_t next_id_ CRIER_GUARDED_BY(mu_) = 1;
  std::uint64_t evicted_ CRIER_GUARDED_BY(mu_) = 0;
};

}  // namespace crier::detail
