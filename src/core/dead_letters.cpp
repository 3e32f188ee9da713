#include "dead_letters.hpp"
#include "core_impl.hpp"

#include <algorithm>

namespace crier::detail {

bool DeadLetterStore::matches(const DeadLetterFilter& f, const DeadLetter& d) noexcept {
  if (!f.subscriber.empty() && f.subscriber != d.subscriber) return false;
  if (!f.event_type.empty() && f.event_type != d.envelope.type) return false;
  if (!f.ids.empty() && std::find(f.ids.begin(), f.ids.end(), d.id) == f.ids.end()) return false;
  return true;
}

std::uint64_t DeadLetterStore::add(Entry entry) {
  MutexLock lock(mu_);
  entry.letter.id = next_id_++;
  const std::uint64_t id = entry.letter.id;
  if (capacity_ == 0) {
    ++evicted_;
    return id;
  }
  while (entries_.size() >= capacity_) {
    entries_.pop_front();
    ++evicted_;
  }
  entries_.push_back(std::move(entry));
  return id;
}

std::vector<DeadLetter> DeadLetterStore::list(const DeadLetterFilter& filter) const {
  MutexLock lock(mu_);
  std::vector<DeadLetter> out;
  for (const Entry& e : entries_)
    if (matches(filter, e.letter)) out.push_back(e.letter);
  return out;
}

std::size_t DeadLetterStore::count(const DeadLetterFilter& filter) const {
  MutexLock lock(mu_);
  return static_cast<std::size_t>(
      std::count_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return matches(filter, e.letter); }));
}

std::vector<DeadLetterStore::Entry> DeadLetterStore::take(const DeadLetterFilter& filter) {
  MutexLock lock(mu_);
  std::vector<Entry> out;
  std::deque<Entry> keep;
  for (Entry& e : entries_)
    (matches(filter, e.letter) ? out.emplace_back(std::move(e)) : keep.emplace_back(std::move(e)));
  entries_.swap(keep);
  return out;
}

void DeadLetterStore::restore(std::vector<Entry> entries) {
  MutexLock lock(mu_);
  for (Entry& e : entries) entries_.push_back(std::move(e));
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.letter.id < b.letter.id; });
}

std::size_t DeadLetterStore::size() const {
  MutexLock lock(mu_);
  return entries_.size();
}

std::uint64_t DeadLetterStore::evicted() const {
  MutexLock lock(mu_);
  return evicted_;
}

}  // namespace crier::detail

namespace crier {

void DeadLetterQueue::redrive_edited(std::uint64_t id, std::string data) {
  (void)data;
  throw Error(Errc::invalid_argument,
              "dead letter " + std::to_string(id) + ": this transport cannot redrive an edited event");
}

}  // namespace crier
