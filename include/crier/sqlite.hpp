// crier's embedded durable transport: one SQLite file, no server.
//
//   auto store = crier::sqlite::open("orders.db");
//   crier::Bus bus{store};  // the rest of the program is unchanged
//
// publish() returns once the event is in the store's journal (a memory-mapped file beside the
// database; at Durability::full, after an fdatasync shared by concurrent publishers), from
// where a background thread moves it into the database in large transactions. Every
// subscriber, in this process or in another one that opens the same file, then gets the event
// at least once, even if a process is killed at any instant: an event is done for a subscriber only after its handler
// returned. Subscribers with the same name share the work (competing consumers); each name gets every event.
//
// Link crier::sqlite. The core library never includes sqlite3.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crier/codec.hpp"
#include "crier/envelope.hpp"
#include "crier/event.hpp"
#include "crier/export.hpp"
#include "crier/json.hpp"
#include "crier/open.hpp"
#include "crier/transport.hpp"

struct sqlite3;

namespace crier::sqlite {

/// How durable an acknowledged publish is.
enum class Durability {
  /// Publish returns once the event is in the kernel's page cache (the journal is a mapped
  /// file); the database runs WAL with synchronous=NORMAL. Survives the process being killed at
  /// any instant; a power loss may take the last events.
  normal,
  /// Publish returns once the event is on the disk (an fdatasync of the journal, shared by the
  /// publishers waiting at that moment); the database runs WAL with synchronous=FULL. Survives
  /// power loss.
  full,
};

/// What the store may delete. An event is only ever deleted once every subscriber that knows
/// of it has finished it (handled or dead-lettered and purged); dead letters keep their event.
struct Retention {
  /// Keep finished events at most this long. 0: no age limit.
  std::chrono::milliseconds max_age{0};
  /// Keep at most this many finished events. 0: no count limit.
  std::uint64_t max_events = 0;
  /// How often publishes prune (every this many commits). 0: only prune() prunes.
  std::uint64_t every_commits = 1000;
};

struct Options {
  Durability durability = Durability::normal;
  /// How long a write waits for another process holding the file's write lock before
  /// publish fails with Errc::transport_error.
  std::chrono::milliseconds busy_timeout{5000};
  /// How long a consumer's claim on events lasts without renewal. A process that dies holding
  /// events has them handed to another consumer of the same name after this.
  std::chrono::milliseconds lease{30000};
  /// How many fetched events a subscriber holds in memory at most.
  std::size_t window = 1024;
  /// Where a failed event waits for its delayed retry. false (the default): in the bus that
  /// failed it, which holds it (renewing its lease) and tries it again on its timer. true: in
  /// the store, taking no memory; any consumer of the subscriber name takes it when it is due.
  /// Either way the retry policy behaves the same. Ordered subscribers' events always wait in
  /// the bus, holding back their key.
  bool retries_wait_in_store = false;
  Retention retention{};
  /// Upper bound of the file in bytes (0: none). Past it, publish fails as on a full disk.
  std::uint64_t max_bytes = 0;
  /// How far publishers may run ahead of the database: bytes journaled and not yet moved into
  /// the file (in journal files of a quarter of this, 1 to 64 MiB, at least two). Past it,
  /// publish waits for the move (back-pressure) up to busy_timeout, then fails with
  /// Errc::transport_error. It bounds the disk and page cache a burst can take when SQLite
  /// cannot keep up.
  std::uint64_t max_journal_bytes = 256ull << 20;
  /// The largest event publish takes, in bytes (its data and attributes together); a larger
  /// one is refused with Errc::invalid_argument and nothing of that publish is stored. 0 (the
  /// default), or more than SQLite stores in one row: that (its length limit, 1,000,000,000
  /// bytes unless SQLite was built otherwise) less 64 KiB.
  std::uint64_t max_event_bytes = 0;
  /// Run SQLite's quick_check when opening, so a corrupt file is refused up front.
  bool verify_on_open = true;
  /// Opens an existing store only to read it, as the tools' status and tail do: the file is
  /// not written and crier makes nothing beside it (SQLite may create the -wal and -shm files
  /// with which readers of a WAL file coordinate), and events a killed publisher journaled
  /// but never moved into the file are not seen until a writer opens it (the inspector's
  /// notices() count them). A missing file (Errc::not_found), a file that is no crier store
  /// or one of an older schema is refused. What would write (append, consume, redrive,
  /// purge, prune, the inspector's move and publish_json) throws Errc::invalid_argument.
  bool read_only = false;
};

/// Counts of a store, for tools and tests.
struct StoreStats {
  std::uint64_t head = 0;          ///< the sequence of the newest event (0: none yet)
  std::uint64_t events = 0;        ///< events stored
  std::uint64_t dead_letters = 0;  ///< dead letters stored
  std::uint64_t in_flight = 0;     ///< claims and retry rows: events read but not finished
  std::uint64_t commits = 0;       ///< publish transactions by this store object
  std::uint64_t appended = 0;      ///< events appended by this store object
  std::uint64_t journaled = 0;     ///< of those, events in its journal not yet in the database
};

/// What Store::verify() found.
struct VerifyResult {
  std::uint64_t events = 0;              ///< events checked
  std::vector<std::uint64_t> corrupt{};  ///< the sequences of the damaged events, ascending
  /// One line per finding, for people: SQLite's integrity_check (the file's structure), then
  /// each damaged event ("sequence N: why").
  std::vector<std::string> problems{};
  bool ok() const noexcept { return problems.empty(); }
};

class Store;
CRIER_EXPORT std::shared_ptr<Store> open(const std::string& path, const Options& options);

/// A SQLite store: a crier::Transport, its dead-letter queue and its inspector (positions are
/// the events' sequence numbers, printed in decimal). Thread-safe. Obtain one with open().
class CRIER_EXPORT Store final : public Transport, public DeadLetterQueue, public Inspector {
 public:
  struct Impl;
  /// What only open() can make: a Store is never built by hand.
  class OpenKey {
    OpenKey() = default;
    friend std::shared_ptr<Store> open(const std::string& path, const Options& options);
  };
  Store(std::shared_ptr<Impl> impl, OpenKey key);
  ~Store() override;

  std::string_view name() const noexcept override { return "sqlite"; }
  void append(std::span<const Envelope> events) override;
  std::unique_ptr<Consumer> consume(const ConsumerSpec& spec) override;
  DeadLetterQueue& dead_letter_queue() override { return *this; }
  Inspector& inspector() override { return *this; }

  // DeadLetterQueue
  std::vector<DeadLetter> list(const DeadLetterFilter& filter) override;
  std::size_t count(const DeadLetterFilter& filter) override;
  std::size_t redrive(const DeadLetterFilter& filter) override;
  std::size_t purge(const DeadLetterFilter& filter) override;
  void redrive_edited(std::uint64_t id, std::string data) override;

  // Inspector
  std::vector<SubscriberStatus> subscribers() override;
  std::vector<EventTypeStatus> event_types() override;
  std::vector<StoredEnvelope> browse(const BrowseQuery& query) override;
  void move(std::string_view subscriber, std::string_view event_type, std::string_view position) override;
  std::string publish_json(std::string_view cloudevent) override;
  /// Events a process that ended journaled and did not move into the database: they are in
  /// no count until a store opened for writing moves them (at once when it opens).
  std::vector<std::string> notices() override;

  /// Deletes finished events by the retention rules; returns how many.
  std::uint64_t prune();
  /// Deletes finished events by the given rules; returns how many.
  std::uint64_t prune(const Retention& rules);
  StoreStats stats();
  /// How many stored events of `event_type` the subscriber `subscriber` has not finished:
  /// not yet read, held by a consumer (in any process), or waiting for a retry. They are
  /// delivered by the next bus that subscribes under that name.
  std::uint64_t backlog(std::string_view subscriber, std::string_view event_type);
  /// Checks the whole file: SQLite's integrity_check, then every event's checksum. Reads one
  /// snapshot on a connection of its own: publishing and consuming go on meanwhile. A
  /// damaged event is also dead-lettered, with the reason, when a subscriber reaches it.
  VerifyResult verify();
  const std::string& path() const noexcept;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Opens (creating if needed) the store in the file at `path`. Throws
/// Error(Errc::store_error) naming the file and the reason when it is not a crier store, was
/// written by a newer crier, or is corrupt (the file is then not modified), and
/// Error(Errc::transport_error) when it cannot be opened or written, saying why: the path is
/// a directory, its directory does not exist, or this user may not write the file or its
/// directory (the store creates its WAL and journal files beside the file).
CRIER_EXPORT std::shared_ptr<Store> open(const std::string& path, const Options& options = {});

/// Makes store files openable by crier::open_transport(): a plain path, or `sqlite://PATH`
/// (OpenOptions::read_only opens with Options::read_only). Unlike open(), it makes no store:
/// a file that is not there is Error(Errc::not_found).
CRIER_EXPORT void register_scheme();

/// Transactional outbox for an envelope built by the caller (crier::new_envelope, or an event
/// from elsewhere): stores it as publish_in does. Throws Error(Errc::invalid_envelope) when
/// it is not a valid CloudEvent, and as publish_in otherwise.
CRIER_EXPORT void publish_envelope_in(sqlite3* db, const Envelope& envelope);

/// Transactional outbox: stores `event` through the application's own connection `db` to a
/// crier store file, inside whatever transaction is open on it. If the application commits,
/// the event is published (to every subscriber, in every process); if it rolls back, it never
/// existed. Throws Error(Errc::store_error) when the file has no crier store,
/// Errc::transport_error when the insert fails (the application's transaction stays usable).
template <class E>
void publish_in(sqlite3* db, const E& event, const Attributes& attributes = {}) {
  static_assert(Event<E>, "crier: declare the event type with CRIER_EVENT(Type, \"name\")");
  validate(attributes);
  publish_envelope_in(db, new_envelope(event_type_v<E>, Codec<E>::encode(event), Codec<E>::content_type, &attributes));
}

}  // namespace crier::sqlite
