#include "crier/bus.hpp"

#include <string>

namespace crier {

Bus::Bus() : Bus(BusOptions{}) {}

Bus::Bus(BusOptions options) : core_(std::make_shared<detail::BusCore>(std::move(options))) {}

Bus::~Bus() {
  if (!core_) return;  // moved from
  try {
    core_->drain(core_->drain_timeout());
  } catch (const Error&) {
    // Destroyed from one of its own handlers: the core stops without waiting for itself.
  }
}

DrainResult Bus::drain(std::chrono::milliseconds timeout) { return core_->drain(timeout); }

std::vector<SubscriberStats> Bus::stats() const { return core_->stats(); }

const std::string& Bus::source() const noexcept { return core_->source(); }

void Bus::check_subscription(std::string_view name, std::string_view type, const SubscribeOptions& options) {
  if (!is_valid_subscriber_name(name))
    throw Error(Errc::invalid_name, "subscriber name '" + std::string(name) + "' for " + std::string(type) +
                                        " (want 1-128 characters of [A-Za-z0-9_-], starting with a letter or digit)");
  if (options.concurrency < 1 || options.concurrency > 1024)
    throw Error(Errc::invalid_argument, "subscriber '" + std::string(name) + "': concurrency must be 1..1024, not " +
                                            std::to_string(options.concurrency));
  if (options.queue_capacity < 1 || options.queue_capacity > (std::size_t{1} << 30))
    throw Error(Errc::invalid_argument, "subscriber '" + std::string(name) + "': queue_capacity must be 1..2^30");
  if (options.mode == DeliveryMode::Inline && options.concurrency != 1)
    throw Error(Errc::invalid_argument,
                "subscriber '" + std::string(name) + "': concurrency applies to async subscribers only");
}

Subscription::Subscription(Subscription&& other) noexcept
    : core_(std::move(other.core_)), sub_(std::exchange(other.sub_, nullptr)) {}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    unsubscribe();
    core_ = std::move(other.core_);
    sub_ = std::exchange(other.sub_, nullptr);
  }
  return *this;
}

Subscription::~Subscription() { unsubscribe(); }

std::size_t Subscription::unsubscribe() noexcept {
  detail::SubscriberBase* sub = std::exchange(sub_, nullptr);
  if (sub == nullptr) return 0;
  auto core = core_.lock();
  core_.reset();
  return core ? core->remove(sub) : 0;
}

bool Subscription::active() const noexcept { return sub_ != nullptr && !core_.expired(); }

const std::string& Delivery::source() const noexcept { return sub_->core.source(); }

std::string_view Delivery::subject() const noexcept {
  return meta_->attributes ? std::string_view(meta_->attributes->subject) : std::string_view();
}

std::string_view Delivery::partition_key() const noexcept {
  return meta_->attributes ? std::string_view(meta_->attributes->partition_key) : std::string_view();
}

Envelope Delivery::envelope() const {
  Envelope e;
  e.id = meta_->id.to_string();
  e.source = source();
  e.type = std::string(type());
  e.time = format_time(meta_->time);
  e.datacontenttype = std::string(codec_.content_type);
  e.extensions["correlationid"] = meta_->correlation_id.to_string();
  if (!meta_->causation_id.is_nil()) e.extensions["causationid"] = meta_->causation_id.to_string();
  if (const Attributes* a = meta_->attributes.get()) {
    e.subject = a->subject;
    e.dataschema = a->dataschema;
    if (!a->partition_key.empty()) e.extensions["partitionkey"] = a->partition_key;
    for (const auto& [k, v] : a->extensions) e.extensions[k] = v;
  }
  e.data = codec_.encode(event_);
  return e;
}

}  // namespace crier
