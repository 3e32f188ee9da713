// The feed of a durable subscriber: a thread that fetches the subscriber's stored events from
// the transport and queues them as ready events; the bus's workers then run them with the same
// retry, breaker, ordering and dead-letter code as any async subscriber, and settle each with
// the transport (ack, a persisted failure, a dead letter).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "common/mutex.hpp"
#include "crier/detail/core.hpp"
#include "crier/transport.hpp"

namespace crier::detail {

class Feed {
 public:
  Feed(SubscriberBase& sub, std::unique_ptr<Consumer> consumer, MakeDelivered make_delivered);
  ~Feed();
  Feed(const Feed&) = delete;
  Feed& operator=(const Feed&) = delete;

  void start();
  /// Closes the consumer (its unsettled events go back to the transport) and joins.
  void stop() noexcept;
  /// True while the transport still holds events not yet queued here.
  bool pending();
  /// The transport's count of events this subscriber has not finished; 0 when it cannot
  /// tell (the error is reported).
  std::uint64_t backlog() noexcept;

 private:
  void loop();
  void take(StoredEvent&& stored);

  SubscriberBase& sub_;
  std::unique_ptr<Consumer> consumer_;
  MakeDelivered make_delivered_;
  std::thread thread_;
  Mutex mu_;  // with stop_cv_: a back-off wait ends at once when the feed stops
  CondVar stop_cv_;
  std::atomic<bool> stopping_{false};
};

}  // namespace crier::detail
