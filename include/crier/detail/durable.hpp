// Subscribers of a durable bus: a feed thread fetches the subscriber's stored events from the
// transport and queues them as ready events; the bus's workers then run them with the same
// retry, breaker, ordering and dead-letter code as any async subscriber, and settle each with
// the transport (ack, a persisted failure, a dead letter). Internal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <thread>

#include "crier/codec.hpp"
#include "crier/detail/core.hpp"
#include "crier/detail/subscribers.hpp"
#include "crier/transport.hpp"

namespace crier::detail {

/// Turns a stored envelope's data back into a typed, parked event. Throws on bad data.
using DecodeFn = std::unique_ptr<Parked> (*)(const Envelope& envelope);

/// The non-template half of a durable subscriber: its consumer and the thread feeding it.
class CRIER_EXPORT Feed {
 public:
  Feed(SubscriberBase& sub, std::unique_ptr<Consumer> consumer, DecodeFn decode);
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
  DecodeFn decode_;
  std::thread thread_;
  std::mutex mu_;  // with stop_cv_: a back-off wait ends at once when the feed stops
  std::condition_variable stop_cv_;
  std::atomic<bool> stopping_{false};
};

template <class E, class H>
class DurableSubscriber final : public TypedSubscriber<E, H> {
  using Base = TypedSubscriber<E, H>;

 public:
  DurableSubscriber(BusCore& bus, std::string sub_name, const SubscribeOptions& o, H h)
      : Base(bus, std::move(sub_name), o, std::move(h), true),
        feed_(*this,
              bus.transport()->consume(ConsumerSpec{this->name, std::string(event_type_v<E>), o.start,
                                                     o.ordering == Ordering::ordered}),
              &decode) {}
  ~DurableSubscriber() override { feed_.stop(); }

  void start_feed() override { feed_.start(); }
  void stop_feed() noexcept override { feed_.stop(); }
  bool source_pending() override { return feed_.pending(); }
  std::uint64_t source_backlog() override { return feed_.backlog(); }

 private:
  static std::unique_ptr<Parked> decode(const Envelope& envelope) {
    return std::make_unique<ParkedEvent<E>>(Codec<E>::decode(envelope.data));
  }

  Feed feed_;
};

}  // namespace crier::detail
