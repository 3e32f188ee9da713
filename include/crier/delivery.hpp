// What a handler may know about the event it handles.
#pragma once

#include <string>
#include <string_view>

#include "crier/detail/core.hpp"
#include "crier/envelope.hpp"
#include "crier/event.hpp"

namespace crier {

namespace detail {
struct DeliveryAccess;
}  // namespace detail

/// The context of one delivery, passed to handlers declared as
/// `void(const E&, crier::Delivery&)`. Valid only during the handler call; not thread-safe.
/// Building it costs nothing beyond what the bus already holds: the envelope is encoded only
/// if envelope() is called.
class CRIER_EXPORT Delivery {
 public:
  /// The event's unique, time-ordered id (UUIDv7); the same for every subscriber.
  const Uuid& id() const noexcept { return meta_->id; }
  /// The CloudEvents type name.
  std::string_view type() const noexcept { return sub_->event_type; }
  /// The CloudEvents source of the publishing bus.
  const std::string& source() const noexcept;
  /// When the event was published.
  Timestamp time() const noexcept { return meta_->time; }
  /// 1 for the first attempt, 2 for the first retry, ...
  int attempt() const noexcept { return attempt_; }
  /// The id of the first event of the chain this one belongs to (its own id for a root).
  const Uuid& correlation_id() const noexcept { return meta_->correlation_id; }
  /// The id of the event whose handler published this one; nil for a root event.
  const Uuid& causation_id() const noexcept { return meta_->causation_id; }
  /// The CloudEvents subject set by the publisher, or empty.
  std::string_view subject() const noexcept;
  /// The partition key set by the publisher, or empty.
  std::string_view partition_key() const noexcept;
  /// All publisher-set attributes, or null when none were set.
  const Attributes* attributes() const noexcept { return meta_->attributes.get(); }
  /// The name of the subscriber being called.
  std::string_view subscriber() const noexcept { return sub_->name; }

  /// The CloudEvents envelope of this event, with its data encoded by the type's codec.
  /// Throws Error(Errc::codec_error) when the type has no codec.
  Envelope envelope() const;

  /// Publishes on the same bus, carrying this event's correlation id and setting its id as
  /// the new event's causation id.
  template <class E>
  void publish(const E& event);
  template <class E>
  void publish(const E& event, const Attributes& attributes);

  /// How the bus encodes the event for envelope().
  struct EncodeFn {
    std::string (*encode)(const void*);
    std::string_view content_type;
  };

 private:
  friend struct detail::DeliveryAccess;  // constructed by the bus only
  Delivery(detail::SubscriberBase& sub, const detail::PublishMeta& meta, const void* event, EncodeFn codec,
           int attempt) noexcept
      : sub_(&sub), meta_(&meta), event_(event), codec_(codec), attempt_(attempt) {}

  detail::SubscriberBase* sub_;
  const detail::PublishMeta* meta_;
  const void* event_;
  EncodeFn codec_;
  int attempt_;
};

namespace detail {
/// Makes the Delivery of one handler call: the bus's typed code only.
struct DeliveryAccess {
  static Delivery make(SubscriberBase& sub, const PublishMeta& meta, const void* event, Delivery::EncodeFn codec,
                       int attempt) noexcept {
    return Delivery(sub, meta, event, codec, attempt);
  }
};
}  // namespace detail

}  // namespace crier
