#include "crier/bus.hpp"

#include "common/mutex.hpp"
#include "common/thread_name.hpp"
#include "core_impl.hpp"
#include "envelope_build.hpp"

#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace crier {

namespace {

// Buses destroyed from inside one of their own handlers cannot be drained by the thread that
// destroys them: that thread is in the middle of a handler the drain must wait for. A reaper
// thread drains and frees each of them instead; the reapers still running when the program
// exits are joined then, so a drain is never cut short by static destruction.
class Reapers {
 public:
  void reap(std::shared_ptr<detail::BusCore> core) {
    detail::MutexLock lock(mu_);
    std::erase_if(threads_, [](Reaper& r) {
      if (!r.done->load(std::memory_order_acquire)) return false;
      r.thread.join();
      return true;
    });
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back(Reaper{std::thread([core = std::move(core), done]() mutable {
                                detail::name_this_thread("crier-drain");
                                try {
                                  auto& c = detail::CoreImpl::of(*core);
                                  c.drain(c.drain_timeout());
                                } catch (...) {  // out of memory: the core still stops below
                                }
                                core.reset();
                                done->store(true, std::memory_order_release);
                              }),
                              done});
  }
  ~Reapers() {
    detail::MutexLock lock(mu_);
    for (Reaper& r : threads_) r.thread.join();
  }

 private:
  struct Reaper {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  detail::Mutex mu_;
  std::vector<Reaper> threads_ CRIER_GUARDED_BY(mu_);
};

Reapers& reapers() {
  static Reapers r;
  return r;
}

}  // namespace

namespace detail {
void bus_moved_from() {
  throw Error(Errc::invalid_argument, "this crier::Bus was moved from: use the Bus it was moved to");
}
}  // namespace detail

Bus::Bus() : Bus(BusOptions{}) {}

Bus::Bus(BusOptions options) : core_(std::make_shared<detail::CoreImpl>(std::move(options), nullptr)) {}

Bus::Bus(std::shared_ptr<Transport> transport, BusOptions options) {
  if (!transport) throw Error(Errc::invalid_argument, "Bus: the transport is null");
  core_ = std::make_shared<detail::CoreImpl>(std::move(options), std::move(transport));
}

Bus::~Bus() {
  if (!core_) return;  // moved from
  if (detail::CoreImpl::of(*core_).inside_own_handler()) {
    // Refuse outside publishes at once; a reaper drains once this handler has returned.
    core_->closed.store(true, std::memory_order_seq_cst);
    reapers().reap(std::move(core_));
    return;
  }
  try {
    detail::CoreImpl::of(*core_).drain(detail::CoreImpl::of(*core_).drain_timeout());
  } catch (...) {  // out of memory while reporting: the core still stops when freed
  }
}

detail::BusCore& Bus::core() const {
  if (!core_) [[unlikely]]
    detail::bus_moved_from();
  return *core_;
}

DrainResult Bus::drain(std::chrono::milliseconds timeout) { return detail::CoreImpl::of(core()).drain(timeout); }

bool Bus::flush(std::chrono::milliseconds timeout) { return detail::CoreImpl::of(core()).flush(timeout); }

MetricsSnapshot Bus::metrics() const { return detail::CoreImpl::of(core()).metrics(); }

std::vector<DeadLetter> Bus::dead_letters(const DeadLetterFilter& filter) const {
  return detail::CoreImpl::of(core()).dead_letters(filter);
}

std::size_t Bus::dead_letter_count(const DeadLetterFilter& filter) const {
  return detail::CoreImpl::of(core()).dead_letter_count(filter);
}

std::size_t Bus::redrive(const DeadLetterFilter& filter) { return detail::CoreImpl::of(core()).redrive(filter); }

std::size_t Bus::purge(const DeadLetterFilter& filter) { return detail::CoreImpl::of(core()).purge(filter); }

const std::string& Bus::source() const { return detail::CoreImpl::of(core()).source(); }

void Bus::check_subscription(std::string_view name, std::string_view type, const SubscribeOptions& o) {
  if (!is_valid_subscriber_name(name))
    throw Error(Errc::invalid_name, "subscriber name " + detail::quoted_name(name) + " for " + std::string(type) +
                                        " (want " + std::string(detail::kSubscriberNameRule) + ")");
  const std::string who = "subscriber '" + std::string(name) + "' of " + std::string(type);
  auto bad = [&](const std::string& why) { return Error(Errc::invalid_argument, who + ": " + why); };
  if (o.concurrency < 1 || o.concurrency > 1024)
    throw bad("concurrency must be 1..1024, not " + std::to_string(o.concurrency));
  if (o.queue_capacity < 1 || o.queue_capacity > (std::size_t{1} << 30)) throw bad("queue_capacity must be 1..2^30");
  if (o.retry.max_attempts < 1) throw bad("retry.max_attempts must be at least 1");
  if (o.retry.immediate_attempts < 1) throw bad("retry.immediate_attempts must be at least 1");
  if (o.retry.immediate_attempts > o.retry.max_attempts)
    throw bad("retry.immediate_attempts (" + std::to_string(o.retry.immediate_attempts) +
              ") must not exceed retry.max_attempts (" + std::to_string(o.retry.max_attempts) +
              "): immediate attempts are counted among all attempts");
  if (o.retry.initial_delay.count() < 0 || o.retry.max_delay.count() < 0 || o.retry.multiplier < 1)
    throw bad("retry delays must not be negative and the multiplier not below 1");
  if (o.breaker.consecutive_failures < 0 || o.breaker.failure_rate < 0 || o.breaker.failure_rate > 1 ||
      o.breaker.window < 1 || o.breaker.cooldown.count() < 0)
    throw bad("breaker: consecutive_failures >= 0, 0 <= failure_rate <= 1, window >= 1, cooldown >= 0");
  if (o.block_timeout.count() < 0 || o.handler_budget.count() < 0) throw bad("timeouts must not be negative");
  if (o.mode == DeliveryMode::sync) {
    if (o.concurrency != 1) throw bad("concurrency applies to async subscribers only");
    if (o.breaker.consecutive_failures > 0 || o.breaker.failure_rate > 0)
      throw bad("a circuit breaker needs an async subscriber (an inline one has no backlog to hold)");
    if (o.ordering == Ordering::ordered) throw bad("ordering applies to async subscribers only");
    if (o.handler_budget.count() > 0) throw bad("handler_budget applies to async subscribers only");
  }
}

void Bus::check_durable(std::string_view name, std::string_view type, const SubscribeOptions& o) {
  if (o.mode == DeliveryMode::sync)
    throw Error(Errc::invalid_argument, "subscriber '" + std::string(name) + "' of " + std::string(type) +
                                            ": inline delivery runs inside publish and cannot be durable; "
                                            "subscribe with the default DeliveryMode::async");
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
  return core ? detail::CoreImpl::of(*core).remove(sub) : 0;
}

bool Subscription::active() const noexcept { return sub_ != nullptr && !core_.expired(); }

const std::string& Delivery::source() const noexcept {
  return meta_->stored ? meta_->stored->source : detail::CoreImpl::of(sub_->core).source();
}

std::string_view Delivery::subject() const noexcept {
  return meta_->attributes ? std::string_view(meta_->attributes->subject) : std::string_view();
}

std::string_view Delivery::partition_key() const noexcept { return meta_->partition_key(); }

Envelope Delivery::envelope() const {
  if (meta_->stored) return *meta_->stored;  // as stored, data and all
  Envelope e = detail::build_envelope(*meta_, source(), type());
  e.datacontenttype = std::string(codec_.content_type);
  e.data = codec_.encode(event_);
  return e;
}

}  // namespace crier
