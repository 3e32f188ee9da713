// What happens when a handler throws: immediate retries, delayed retries on the timer, the
// circuit breaker, and the dead letters.
#include <cmath>
#include <random>

#include "common/error_text.hpp"
#include "core_impl.hpp"
#include "crier/bus.hpp"
#include "dead_letters.hpp"
#include "envelope_build.hpp"

namespace crier::detail {

namespace {

// Whether the retry policy's own classifier calls the current exception permanent. Called
// inside the handler's catch block, and only when there is a classifier.
bool classified_permanent(const SubscriberBase& sub) noexcept {
  if (!sub.state().retry.permanent) return false;
  try {
    return sub.state().retry.permanent(std::current_exception());
  } catch (...) {
    return false;  // a classifier that throws says nothing
  }
}

// A parked event on the timer. Dropped unrun (the bus stopped), it still returns its
// subscriber's reference.
struct RetryTimer {
  RetryTimer(CoreImpl* c, SubscriberBase* s, std::unique_ptr<Parked> e) : core(c), sub(s), event(std::move(e)) {}
  RetryTimer(const RetryTimer&) = delete;
  RetryTimer& operator=(const RetryTimer&) = delete;
  CoreImpl* core;
  SubscriberBase* sub;
  std::unique_ptr<Parked> event;
  ~RetryTimer() {
    if (event) {
      sub->state().waiting.fetch_sub(1, std::memory_order_relaxed);
      core->release_ref(sub);
    }
  }
};

}  // namespace

Parked::~Parked() = default;

Clock::duration CoreImpl::retry_delay(const RetryPolicy& policy, int delayed_retry) const {
  const double base = static_cast<double>(std::chrono::nanoseconds(policy.initial_delay).count()) *
                      std::pow(std::max(1.0, policy.multiplier), std::max(0, delayed_retry - 1));
  const double cap = std::min(base, static_cast<double>(std::chrono::nanoseconds(policy.max_delay).count()));
  if (!policy.jitter || cap <= 0) return Clock::duration(static_cast<std::int64_t>(cap));
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return Clock::duration(static_cast<std::int64_t>(std::uniform_real_distribution<double>(0, cap)(rng)));
}

void CoreImpl::park_for_retry(SubscriberBase& sub, std::unique_ptr<Parked> p, Clock::duration delay) {
  sub.state().waiting.fetch_add(1, std::memory_order_relaxed);
  sub.state().refs.fetch_add(1, std::memory_order_relaxed);
  auto timer = std::make_shared<RetryTimer>(this, &sub, std::move(p));
  at(clock_->now() + delay, [timer] {
    SubscriberBase& s = *timer->sub;
    // Queued before it stops counting as waiting: drain must never see it nowhere (and so
    // the bus idle while a retry is on its way).
    s.state().push_ready(std::move(timer->event));
    s.state().waiting.fetch_sub(1, std::memory_order_seq_cst);
    timer->core->try_schedule(s);
    timer->core->release_ref(&s);
  });
}

void CoreImpl::attempt_failed(SubscriberBase& sub, int attempt, const void* event, const PublishMeta& meta,
                              std::unique_ptr<Parked> parked, Thrown thrown) noexcept {
  try {
    std::string message(thrown.message);
    bool permanent = thrown.permanent || classified_permanent(sub);
    if (!parked) {
      // The event leaves the queue (or the publisher's stack) from here on: copy it once.
      parked = sub.state().make_parked(event, meta);
      if (parked->meta.id.is_nil()) {  // nobody asked for an id at publish time
        parked->meta.id = Uuid::v7();
        parked->meta.time = clock_->wall_now();
        parked->meta.correlation_id = parked->meta.id;
      }
    }
    Parked& p = *parked;
    for (;;) {
      const Timestamp now = clock_->wall_now();
      sub.state().failed.fetch_add(1, std::memory_order_relaxed);
      if (p.first_error.empty()) {
        p.first_error = message;
        p.first_failure = now;
      }
      p.last_error = message;
      p.last_failure = now;
      p.attempts = attempt;
      report(Report::Kind::handler_failed, sub.name, sub.event_type, message, attempt);
      const bool open = sub.state().mode == DeliveryMode::async && sub.state().breaker_failure();

      if (permanent || attempt >= sub.state().retry.max_attempts) {
        const std::string key(p.meta.partition_key());
        dead_letter(sub, std::move(parked));
        if (sub.ordering == Ordering::ordered) sub.ordered_done(key);
        return;
      }
      p.next_attempt = attempt + 1;
      if (sub.ordering == Ordering::ordered) {
        sub.state().ordered_block(p.meta.partition_key());
        p.owns_key = true;
      }
      if (open) {  // no attempt is spent while the breaker is open: wait for it in line
        sub.state().push_ready(std::move(parked));
        return;
      }
      if (attempt < sub.state().retry.immediate_attempts) {
        ++attempt;
        sub.state().retried.fetch_add(1, std::memory_order_relaxed);
        try {
          sub.state().attempt_fn(sub, p.event(), p.meta, attempt);
          sub.delivered.fetch_add(1, std::memory_order_relaxed);
          attempt_succeeded(sub, p);
          return;
        } catch (const std::exception& e) {
          message = e.what();
          permanent = dynamic_cast<const PermanentError*>(&e) != nullptr || classified_permanent(sub);
        } catch (...) {
          message = Thrown::unknown().message;
          permanent = classified_permanent(sub);
        }
        continue;
      }
      const Clock::duration delay =
          retry_delay(sub.state().retry, attempt - std::max(1, sub.state().retry.immediate_attempts) + 1);
      if (Consumer* consumer = sub.state().consumer; consumer && p.lease) {
        // Durable: the attempt count and the retry time survive a restart.
        const Attempts attempts{p.attempts, p.first_error, p.first_failure,
                                clock_->wall_now() + std::chrono::duration_cast<Timestamp::duration>(delay)};
        try {
          if (consumer->redelivers() && sub.ordering != Ordering::ordered) {
            consumer->retry(std::move(p.lease), attempts);  // the transport brings it back when due
            return;
          }
          consumer->failed(*p.lease, attempts);
        } catch (const std::exception& e) {
          // Not recorded: after a restart the event is tried again from its last recorded count.
          const std::string id = p.meta.stored ? p.meta.stored->id : p.meta.id.to_string();
          report(Report::Kind::transport_failed, sub.name, sub.event_type,
                 "cannot record attempt " + std::to_string(p.attempts) + " of event " + id + ": " + message_of(e) +
                     (p.lease ? "; it is retried all the same" : "; it comes back from the transport"),
                 p.attempts);
          if (!p.lease) return;  // given back all the same: the transport hands it out again
        }
      }
      park_for_retry(sub, std::move(parked), delay);
      return;
    }
  } catch (...) {
    // Out of memory while handling a failure. The failure is counted; nothing more can be
    // done for this event, and the bus must not die of it.
  }
}

void CoreImpl::attempt_succeeded(SubscriberBase& sub, Parked& parked) noexcept {
  sub.breaker_success();
  if (sub.state().consumer && parked.lease) {
    try {
      sub.state().consumer->ack(std::move(parked.lease));
    } catch (const std::exception&) {
      // Not recorded as done: the transport hands the event out again (at least once).
    }
  }
  if (sub.ordering == Ordering::ordered) {
    try {
      sub.ordered_done(parked.meta.partition_key());
    } catch (...) {
    }
  }
}

void CoreImpl::dead_letter(SubscriberBase& sub, std::unique_ptr<Parked> p) noexcept {
  try {
    DeadLetter letter;
    if (p->meta.stored) {
      letter.envelope = *p->meta.stored;
    } else {
      letter.envelope = build_envelope(p->meta, source_, sub.event_type);
    }
    if (!p->meta.stored && p->encodable()) {  // else the letter has attributes only; the typed event stays for redrive
      try {
        letter.envelope.data = p->encode();
        letter.envelope.datacontenttype = std::string(p->content_type());
      } catch (const Error& e) {
        letter.last_error = p->last_error + " (and its data could not be encoded: " + e.message() + ")";
      }
    }
    letter.subscriber = sub.name;
    letter.attempts = p->attempts;
    letter.first_error = p->first_error;
    if (letter.last_error.empty()) letter.last_error = p->last_error;
    letter.first_failure = p->first_failure;
    letter.last_failure = p->last_failure;
    const std::string event_id = letter.envelope.id;
    const int attempts = p->attempts;
    const std::string last_error = p->last_error;
    const PublishMeta cause = p->meta;
    std::uint64_t id = 0;
    if (sub.state().consumer) {
      if (p->lease) {
        const auto stored = sub.state().store_dead_letter(std::move(p->lease), letter);
        if (!stored) return;
        id = *stored;
      }
    } else {
      id = dead_letters_->add(DeadLetterStore::Entry{std::move(letter), std::move(p)});
    }
    sub.state().dead_lettered.fetch_add(1, std::memory_order_relaxed);
    report(Report::Kind::dead_lettered, sub.name, sub.event_type,
           "gave up after " + std::to_string(attempts) + " attempts: " + last_error, attempts);
    // Announce it, unless it is one of the announcements itself (no loops).
    if (sub.event_type != event_type_v<DeadLettered>) {
      try {
        publish(*this, DeadLettered{id, sub.name, std::string(sub.event_type), event_id, attempts, last_error}, nullptr,
                &cause);
      } catch (const Error&) {
        // The bus is closed or nested too deep: the letter is kept all the same.
      }
    }
  } catch (...) {
  }
}

void CoreImpl::announce_breaker(const SubscriberBase& sub, BreakerState state, const std::string& reason) noexcept {
  if (sub.event_type == event_type_v<BreakerChanged>) return;  // no announcements of announcements
  try {
    publish(*this,
            BreakerChanged{sub.name, std::string(sub.event_type), state, reason,
                           std::chrono::duration_cast<std::chrono::milliseconds>(sub.state().breaker.cooldown)},
            nullptr, nullptr);
  } catch (...) {
    // The bus is closed or its transport refused: the breaker works all the same.
  }
}

std::vector<DeadLetter> CoreImpl::dead_letters(const DeadLetterFilter& filter) const {
  return transport_ ? transport_->dead_letter_queue().list(filter) : dead_letters_->list(filter);
}

std::size_t CoreImpl::dead_letter_count(const DeadLetterFilter& filter) const {
  return transport_ ? transport_->dead_letter_queue().count(filter) : dead_letters_->count(filter);
}

std::size_t CoreImpl::purge(const DeadLetterFilter& filter) {
  return transport_ ? transport_->dead_letter_queue().purge(filter) : dead_letters_->take(filter).size();
}

std::size_t CoreImpl::redrive(const DeadLetterFilter& filter) {
  if (transport_) return transport_->dead_letter_queue().redrive(filter);  // the feeds fetch them again
  std::vector<DeadLetterStore::Entry> orphans;
  std::size_t sent = 0;
  for (auto& entry : dead_letters_->take(filter)) {
    SubscriberBase* target = nullptr;
    {
      MutexLock lock(writer_mu_);
      for (SubscriberBase* s : subscribers_)
        if (s->name == entry.letter.subscriber && s->event_type == entry.letter.envelope.type &&
            s->active.load(std::memory_order_relaxed)) {
          target = s;
          target->state().refs.fetch_add(1, std::memory_order_relaxed);
          break;
        }
    }
    if (target == nullptr || stopped()) {
      if (target) release_ref(target);
      orphans.push_back(std::move(entry));
      continue;
    }
    Parked& p = *entry.event;
    p.next_attempt = 1;  // a fresh attempt count
    p.attempts = 0;
    p.first_error.clear();
    p.last_error.clear();
    p.owns_key = false;
    target->state().push_ready(std::move(entry.event));
    try_schedule(*target);
    release_ref(target);
    ++sent;
  }
  if (!orphans.empty()) dead_letters_->restore(std::move(orphans));
  return sent;
}

}  // namespace crier::detail
