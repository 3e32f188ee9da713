// The feed of a durable subscriber: fetches its stored events and queues them as ready.
#include "feed.hpp"

#include "common/error_text.hpp"
#include "common/thread_name.hpp"
#include "core_impl.hpp"

#include "envelope_build.hpp"

#include <algorithm>
#include <limits>
#include <string>

namespace crier::detail {

namespace {
constexpr auto kFetchWait = std::chrono::milliseconds(100);  // how soon a stop is noticed at worst
// Waits between fetches that failed: doubling from the first to the last.
constexpr auto kFirstBackoff = std::chrono::milliseconds(10);
constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);
}  // namespace

Feed::Feed(SubscriberBase& sub, std::unique_ptr<Consumer> consumer, MakeDelivered make_delivered)
    : sub_(sub), consumer_(std::move(consumer)), make_delivered_(make_delivered) {
  sub_.state().consumer = consumer_.get();
}

Feed::~Feed() { stop(); }

void Feed::start() {
  thread_ = std::thread([this] {
    name_this_thread("crier-feed");
    loop();
  });
}

void Feed::stop() noexcept {
  {
    MutexLock lock(mu_);
    stopping_.store(true, std::memory_order_release);
  }
  stop_cv_.notify_all();
  consumer_->close();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool Feed::pending() {
  try {
    return !consumer_->caught_up();
  } catch (const std::exception&) {
    return true;  // cannot tell: not caught up
  }
}

std::uint64_t Feed::backlog() noexcept {
  try {
    return consumer_->backlog();
  } catch (const std::exception& e) {
    sub_.state().core.report(Report::Kind::transport_failed, sub_.name, sub_.event_type,
                             "cannot count the events left: " + message_of(e), 0);
    return 0;
  }
}

void Feed::loop() {
  // While the store refuses (full disk, locked, I/O error), fetches are tried again with
  // back-off, and reported once per change of state: when they start failing (or fail
  // differently), and when they work again. The events stay stored meanwhile.
  int failures = 0;
  std::string failing_with;
  auto backoff = kFirstBackoff;
  std::vector<std::unique_ptr<Parked>> retired;  // reused
  while (!stopping_.load(std::memory_order_acquire)) {
    // What the workers handled goes here, to the thread that allocated it (retire()).
    sub_.state().take_retired(retired);
    retired.clear();
    std::vector<StoredEvent> batch;
    try {
      batch = consumer_->fetch(consumer_->fetch_batch(), kFetchWait);
    } catch (const std::exception& e) {
      ++failures;
      if (std::string why = message_of(e); why != failing_with) {
        failing_with = std::move(why);
        sub_.state().core.report(Report::Kind::transport_failed, sub_.name, sub_.event_type,
                                 "cannot fetch from the store: " + failing_with + "; trying again with back-off", 0);
      }
      MutexLock lock(mu_);
      const auto until = std::chrono::steady_clock::now() + backoff;
      while (!stopping_.load(std::memory_order_acquire) && stop_cv_.wait_until(mu_, until)) {
      }
      backoff = std::min(backoff * 2, kMaxBackoff);
      continue;
    }
    if (failures != 0) {
      sub_.state().core.report(Report::Kind::transport_failed, sub_.name, sub_.event_type,
                               "fetching from the store works again after " + std::to_string(failures) +
                                   " failed attempts (" + failing_with + ")",
                               0);
      failures = 0;
      failing_with.clear();
      backoff = kFirstBackoff;
    }
    for (StoredEvent& stored : batch) take(std::move(stored));
    if (batch.empty()) continue;
    consumer_->taken(batch.size());  // after queueing: until then the consumer counts them
    sub_.state().core.try_schedule(sub_);
  }
}

void Feed::take(StoredEvent&& stored) {
  // Its data is decoded by the worker that runs it (DeliveredEvent): this thread is the
  // subscriber's only one. Its time is read here, for its metadata.
  auto envelope = std::make_shared<const Envelope>(std::move(stored.envelope));
  const bool damaged = !stored.corrupt.empty();
  std::string unreadable = std::move(stored.corrupt);
  Timestamp time{};
  if (!damaged && !envelope->time.empty()) {  // written by another program, perhaps
    try {
      time = parse_time(envelope->time);
    } catch (const std::exception& e) {
      unreadable = "the event's CloudEvents time attribute is invalid: " + message_of(e);
    }
  }
  if (!unreadable.empty()) {
    sub_.state().dead_letter_unreadable(*envelope, std::move(stored.lease), stored.attempts.failed, unreadable,
                                        damaged);
    return;
  }
  std::unique_ptr<Parked> parked = make_delivered_();
  parked->meta = meta_of_stored(std::move(envelope), time);
  parked->lease = std::move(stored.lease);
  const Attempts& before = stored.attempts;
  if (before.failed > 0) {  // failed before, perhaps in a process that is gone
    // (Counts and times come from outside: kept where arithmetic on them cannot overflow.)
    parked->attempts = std::min(before.failed, std::numeric_limits<int>::max() - 1);
    parked->next_attempt = parked->attempts + 1;
    parked->first_error = before.first_error;
    parked->first_failure = before.first_failure;
    const Timestamp now = sub_.state().core.clock().wall_now();
    if (before.retry_at > now) {
      const auto wait = before.retry_at - now;
      if (sub_.ordering == Ordering::ordered) {
        // It is its key's head, as it was in the process that failed it: later events of the
        // key (handed over after it, in sequence order) wait behind it.
        sub_.state().ordered_block(parked->meta.partition_key());
        parked->owns_key = true;
      }
      sub_.state().core.park_for_retry(sub_, std::move(parked), std::chrono::duration_cast<Clock::duration>(wait));
      return;
    }
  }
  sub_.state().push_ready(std::move(parked));
}

void SubscriberState::dead_letter_unreadable(const Envelope& envelope, std::unique_ptr<Lease> lease, int attempts,
                                             const std::string& reason, bool damaged) noexcept {
  try {
    DeadLetter letter;
    letter.envelope = envelope;
    letter.subscriber = sub.name;
    letter.attempts = attempts;
    letter.first_error = letter.last_error = reason;
    letter.first_failure = letter.last_failure = core.clock().wall_now();
    // Damage is told of even when its letter cannot be stored (a read-only store).
    if (damaged) corrupt.fetch_add(1, std::memory_order_relaxed);
    const bool stored = store_dead_letter(std::move(lease), letter).has_value();
    if (stored) dead_lettered.fetch_add(1, std::memory_order_relaxed);
    if (stored || damaged)
      core.report(damaged ? Report::Kind::corrupt_event : Report::Kind::dead_lettered, sub.name, sub.event_type, reason,
                  attempts);
  } catch (...) {
    // Out of memory for the letter: not settled, so the store hands it out again later.
  }
}

std::optional<std::uint64_t> SubscriberState::store_dead_letter(std::unique_ptr<Lease> lease,
                                                                const DeadLetter& letter) noexcept {
  try {
    return consumer->dead_letter(std::move(lease), letter);
  } catch (const std::exception& e) {
    core.report(Report::Kind::transport_failed, sub.name, sub.event_type,
                "cannot dead-letter event " + letter.envelope.id + " after " + std::to_string(letter.attempts) +
                    (letter.attempts == 1 ? " attempt: " : " attempts: ") + message_of(e) +
                    "; it stays in the transport and comes back",
                letter.attempts);
    return std::nullopt;
  }
}

}  // namespace crier::detail
