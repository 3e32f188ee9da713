// The seam between the bus and where events live. The default bus keeps them in memory and
// needs no transport; a durable or distributed transport (crier::sqlite, and later NATS
// JetStream, Redis Streams) implements these two interfaces, and the bus's retry, breaker,
// dead-letter and metrics code runs unchanged on top of it.
//
// What a transport promises: append() returns once the events are as durable as the
// transport says; a Consumer hands each stored event of its (subscriber, type) to the bus
// with a Lease, keeps it from every other consumer while the bus holds that lease (renewing
// it with the engine as needed), and hands it out again (to any consumer of the same
// subscriber name) if the bus gives the lease up unsettled or goes away. docs/transports.md
// states every call's contract, with a checklist for writing a transport.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crier/dead_letter.hpp"
#include "crier/envelope.hpp"
#include "crier/error.hpp"
#include "crier/export.hpp"
#include "crier/inspect.hpp"

namespace crier {

/// Where a subscriber that the transport has never seen starts reading. Ignored once the
/// subscriber has a position (it resumes where it left off), and by the memory bus.
struct StartFrom {
  enum class Kind { beginning, now, position, time };
  Kind kind = Kind::beginning;
  std::string position{};  ///< Kind::position: the first event to deliver, as the transport prints it
  Timestamp time{};        ///< Kind::time: the first event published at or after this

  /// Every event the transport still holds (the default): nothing published before the
  /// subscriber first came is missed.
  static StartFrom beginning() { return {}; }
  /// Only events published from now on.
  static StartFrom now() { return {Kind::now, {}, {}}; }
  /// From the event at `position` (replay), in the transport's text (Inspector, browse()).
  static StartFrom at(std::string position) { return {Kind::position, std::move(position), {}}; }
  /// From the first event published at or after `t` (replay).
  static StartFrom at_time(Timestamp t) { return {Kind::time, {}, t}; }
};

/// A consumer's hold on one event it handed to the bus. The transport makes it (a subclass
/// carrying what it needs to settle the event: a row's sequence, a JetStream message, a
/// stream entry's id); the bus gives it back exactly once, to one of its consumer's ack(),
/// retry() or dead_letter(), or destroys it unsettled when it gives the event up without an
/// outcome (the bus stopped, the subscription ended): the event is then released, no later
/// than when the consumer closes, and handed out again. A lease may outlive its consumer:
/// destroying it must then be harmless.
class CRIER_EXPORT Lease {
 public:
  virtual ~Lease() = default;
  /// The event's position in the transport's text, as StartFrom::at() and
  /// Inspector::browse() take it.
  virtual std::string position() const = 0;
};

/// What an event's failed attempts left behind. The transport keeps it with the event, so
/// that it survives a restart and a handover to another consumer.
struct Attempts {
  int failed = 0;             ///< attempts already failed
  std::string first_error{};  ///< when failed > 0: the first failure's message
  Timestamp first_failure{};
  Timestamp retry_at{};  ///< when failed > 0: the next attempt is not made before this
};

/// One stored event handed to a consumer.
struct StoredEvent {
  std::unique_ptr<Lease> lease{};  ///< the consumer's hold on it, until the bus settles it
  Envelope envelope{};
  Attempts attempts{};  ///< as the transport recorded them (failed(), retry())
  /// Not empty when the transport found the stored event damaged (a checksum that does not
  /// match, a column of the wrong kind): what and where, e.g. "corrupt event in FILE at
  /// sequence N: ...". The bus then dead-letters it with this reason and reports it; it never
  /// reaches a handler. A transport hands such an event to every consumer whose type it may
  /// be (all of them, when its type cannot be trusted), so that it is never skipped unseen.
  std::string corrupt{};
};

/// What a consumer is for.
struct ConsumerSpec {
  std::string subscriber{};  ///< consumers with the same subscriber name share the work
  std::string event_type{};
  StartFrom start{};
  /// The subscriber keeps per-key order (Ordering::ordered). The bus orders the events one
  /// consumer hands it; the transport must then never hand an event to one consumer while
  /// an earlier event of the same subscriber is unfinished (in flight or waiting for a
  /// retry) in another consumer, and must hand a consumer's events over in sequence order.
  bool ordered = false;
};

/// Hands one subscriber's stored events to the bus, and records what became of them. Called
/// from the bus's threads: fetch from one, the others from any. Only leases this consumer
/// made are given back to it.
class CRIER_EXPORT Consumer {
 public:
  virtual ~Consumer() = default;
  /// Up to `max` events for this consumer, waiting up to `wait` for some to arrive. Each
  /// comes with a lease: no other consumer gets the event while the lease is held, however
  /// long that is (a slow handler, a retry waiting in the bus). A transport whose engine
  /// lets leases lapse (JetStream's AckWait, a Redis pending entry's idle time) renews them
  /// here: the bus calls fetch again as soon as one returns, for as long as the consumer is
  /// open. A transport that limits how many unsettled events it hands out at once returns
  /// none, after `wait`, while that many are out.
  virtual std::vector<StoredEvent> fetch(std::size_t max, std::chrono::milliseconds wait) = 0;
  /// How many events the bus's feed asks fetch() for at once. SQLite and Redis read fastest
  /// at 512 (measured 2026-12-04); a transport whose reads are round trips may ask for more.
  virtual std::size_t fetch_batch() const noexcept { return 512; }
  /// The handler succeeded: the event is done for this subscriber.
  virtual void ack(std::unique_ptr<Lease> lease) = 0;
  /// An attempt failed and the bus keeps the event, to try again at `attempts.retry_at`. The
  /// transport records `attempts` (a restart, or another consumer after this one is gone,
  /// resumes from them) and goes on holding the event; it no longer counts against how many
  /// events the consumer hands out at once.
  virtual void failed(Lease& lease, const Attempts& attempts) = 0;
  /// True when the transport itself redelivers a failed event at its retry time (retry()).
  /// The bus then gives unordered subscribers' failed events back to it instead of waiting
  /// for their retry in memory. Ordered subscribers' events always wait in the bus, holding
  /// their key, so that no later event of the key overtakes them.
  virtual bool redelivers() const noexcept { return false; }
  /// Only when redelivers(): an attempt failed; the transport takes the event back and hands
  /// it out again, with `attempts`, not before `attempts.retry_at`, to any consumer of this
  /// subscriber name.
  virtual void retry(std::unique_ptr<Lease> lease, const Attempts& attempts) {
    (void)lease;
    (void)attempts;
    throw Error(Errc::invalid_argument, "this transport does not redeliver events itself");
  }
  /// The event is given up on: stored as a dead letter of this subscriber and done.
  /// Returns the letter's id. Throws when the letter cannot be stored; the event is then not
  /// done: the transport hands it out again, best after a pause, so that a lasting failure
  /// does not run its handler over and over. The bus reports it (transport_failed).
  virtual std::uint64_t dead_letter(std::unique_ptr<Lease> lease, const DeadLetter& letter) = 0;
  /// The caller has handed `n` fetched events to the bus (queued or settled them).
  virtual void taken(std::size_t n) = 0;
  /// True when every event stored up to now has been fetched by this subscriber name and
  /// taken by the bus, and none waits in the transport for its retry (retry()).
  virtual bool caught_up() = 0;
  /// How many stored events this subscriber has not finished (neither handled nor
  /// dead-lettered), wherever they wait: not yet fetched, held by a consumer, or waiting for
  /// a retry. After close(), this includes what this consumer held. May read the store.
  virtual std::uint64_t backlog() = 0;
  /// Makes a fetch under way return at once; later fetches return nothing.
  virtual void close() noexcept = 0;
};

/// A transport's link to its engine. An embedded transport is always connected.
struct TransportHealth {
  bool connected = true;
  std::uint64_t disconnects = 0;  ///< times the link was lost
  std::uint64_t reconnects = 0;   ///< times it came back
  std::uint64_t retries = 0;      ///< requests sent again after a timeout or a lost link
  std::string server{};           ///< where it is connected now, if it has servers (no password)
};

/// Stores events and hands them to consumers. Shared by every Bus that uses it.
class CRIER_EXPORT Transport {
 public:
  virtual ~Transport() = default;
  /// A short name for errors and metrics: "sqlite", "nats", ...
  virtual std::string_view name() const noexcept = 0;
  /// Stores the events (validated envelopes with their data). Returns once they are as
  /// durable as the transport promises; throws crier::Error (Errc::transport_error) when
  /// they could not be stored, in which case none of them is, or (an engine that stores each
  /// event by itself) the error says that some may be.
  virtual void append(std::span<const Envelope> events) = 0;
  /// A consumer of one subscriber's events.
  virtual std::unique_ptr<Consumer> consume(const ConsumerSpec& spec) = 0;
  /// The dead letters it keeps (for the bus's dead-letter calls and the tools).
  virtual DeadLetterQueue& dead_letter_queue() = 0;
  /// What the tools see of it, and may change (crier/inspect.hpp).
  virtual Inspector& inspector() = 0;

  /// Its link to its engine now (the bus's metrics carry it).
  virtual TransportHealth health() const { return {}; }
  /// Told each time the link is lost (`connected` false) or restored, with what happened.
  using HealthListener = std::function<void(bool connected, std::string_view what)>;
  /// Calls `listener` on a thread of the transport at each change of its link, until the
  /// returned handle is destroyed (after which no call is under way). The listener must not
  /// destroy the handle itself. Transports without a link return an empty handle.
  [[nodiscard]] virtual std::shared_ptr<void> watch(HealthListener listener) {
    (void)listener;
    return nullptr;
  }
};

}  // namespace crier
