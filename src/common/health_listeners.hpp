// The listeners of a transport's link (Transport::watch): added with a handle that removes
// its listener when destroyed, and told of each change. A handle that goes waits for a call
// under way, and outlives the object harmlessly. Shared by the engine transports.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string_view>

#include <crier/transport.hpp>

#include "common/mutex.hpp"

namespace crier::detail {

class HealthListeners {
 public:
  /// Adds `listener` until the returned handle is destroyed.
  std::shared_ptr<void> add(Transport::HealthListener listener) {
    std::uint64_t id = 0;
    {
      MutexLock lock(state_->mu);
      id = state_->next++;
      state_->listeners.emplace(id, std::move(listener));
    }
    std::weak_ptr<State> state = state_;
    return std::shared_ptr<void>(nullptr, [state, id](void*) {
      if (auto s = state.lock()) {
        MutexLock lock(s->mu);
        s->listeners.erase(id);
      }
    });
  }

  /// Calls every listener (one that throws does not stop the others).
  void notify(bool connected, std::string_view what) {
    MutexLock lock(state_->mu);  // held: a handle that goes waits for the call
    for (const auto& [id, listener] : state_->listeners) {
      try {
        listener(connected, what);
      } catch (...) {
      }
    }
  }

 private:
  struct State {
    Mutex mu;
    std::map<std::uint64_t, Transport::HealthListener> listeners CRIER_GUARDED_BY(mu);
    std::uint64_t next CRIER_GUARDED_BY(mu) = 1;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace crier::detail
