// The envelope attributes kept beside a lane's bare events (crier/detail/subscribers.hpp).
#include <deque>
#include <utility>

#include "common/mutex.hpp"
#include "crier/detail/subscribers.hpp"

namespace crier::detail {

struct SideMetas::Held {
  Mutex mu;
  std::deque<std::pair<std::uint64_t, std::unique_ptr<PublishMeta>>> metas CRIER_GUARDED_BY(mu);
};

SideMetas::SideMetas() : held_(std::make_unique<Held>()) {}
SideMetas::~SideMetas() = default;

std::uint64_t SideMetas::next_held() const noexcept {
  MutexLock lock(held_->mu);
  return held_->metas.empty() ? kNone : held_->metas.front().first;
}

std::unique_ptr<PublishMeta> SideMetas::take() {
  MutexLock lock(held_->mu);
  auto meta = std::move(held_->metas.front().second);
  held_->metas.pop_front();
  count_.fetch_sub(1, std::memory_order_relaxed);
  return meta;
}

void SideMetas::add(std::uint64_t position, const PublishMeta& meta) {
  auto copy = std::make_unique<PublishMeta>(meta);
  MutexLock lock(held_->mu);
  held_->metas.emplace_back(position, std::move(copy));
  count_.fetch_add(1, std::memory_order_release);
}

void SideMetas::remove_last() noexcept {
  MutexLock lock(held_->mu);
  held_->metas.pop_back();
  count_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace crier::detail
