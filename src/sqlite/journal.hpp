// The publish journal: how a publish becomes durable without waiting for a SQLite commit.
//
// A publish copies one self-checking record into this store's journal file, which is mapped
// into memory (for Durability::full it then waits for a shared fdatasync), and returns: the
// bytes are in the kernel's page cache, so the event survives the process being killed. A
// mover thread reads the records back in file order and inserts them into the database in
// large transactions, recording in the same transaction how far it got; a journal whose
// process died (its flock is free) is finished by the next store that looks. This is what
// lets publish cost a memcpy instead of a system call or a transaction hand-off.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.hpp"

namespace crier::sqlite {

using ::crier::detail::CondVar;
using ::crier::detail::Mutex;
using ::crier::detail::MutexLock;

/// A record's fields, viewing the bytes of its encoding.
struct RecordView {
  std::uint64_t jseq = 0;
  std::string_view id, type, source, time, datacontenttype, dataschema, subject, extensions, data;
};

/// Appends the journal encoding of `r` to `out`: magic, payload length, CRC-32C, journal
/// sequence (r.jseq), then each field as a 32-bit length and its bytes, padded with zeros to
/// a multiple of 8 bytes. Returns the record's offset in `out`.
std::size_t encode_record(const RecordView& r, std::string& out);
/// Decodes the record at the start of `bytes` (as encode_record made it). Returns its length
/// without padding, or 0 when the bytes there are not one whole record (or, with `verify`, not
/// intact).
std::size_t decode_record(std::string_view bytes, RecordView& out, bool verify);
/// Every intact record in a journal file's bytes, skipping torn or garbled stretches.
std::vector<RecordView> scan_records(std::string_view bytes);

/// This store's own journal: one or more files, each locked while this store lives.
class Journal {
 public:
  /// How a journal behaves.
  struct Limits {
    bool sync_each = false;                         ///< fdatasync before append returns (Durability::full)
    std::uint64_t file_bytes = 64 << 20;            ///< a record that does not fit goes to the next file
    std::size_t max_files = 4;                      ///< files written and not yet moved, at most (2 or more)
    std::chrono::milliseconds wait_for_room{5000};  ///< how long append waits for the mover then
  };
  /// Creates a new journal file in `dir` (made if missing). Throws Error(transport_error).
  Journal(std::string dir, Limits limits);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  /// Appends one record per view (their jseq is assigned here) and, for a syncing journal,
  /// returns once they are on the disk. When max_files are waiting for the mover, waits until
  /// it finished one (back-pressure). Throws Error(transport_error) when there is no room
  /// (the disk is full, or the mover did not make room in time) or the sync fails: then
  /// nothing was acknowledged.
  void append(std::span<const RecordView> records);

  /// Records for the mover, in file order, from one file. Their views stay valid until the
  /// journal is destroyed or moved() is told of a later batch.
  struct Batch {
    std::string file;  // the journal file they are in (the progress row's key)
    std::vector<RecordView> records;
    std::uint64_t progress = 0;  // the next record's jseq, once these are moved
    bool finishes_file = false;  // nothing more will be written to that file
    std::uint64_t end = 0;       // where the mover reads on (internal)
  };
  /// Fills `batch` with up to `max` records appended since the last moved(); false when there
  /// is nothing to move (no record and no finished file).
  bool take(Batch& batch, std::size_t max);
  /// The batch is in the database: reads on after it; a finished file is deleted.
  void moved(const Batch& batch);
  /// Waits until take() may find something, or stop_waits(), or `timeout`. For the mover only.
  void wait(std::chrono::milliseconds timeout);
  /// Waits for `timeout` or stop_waits(), whatever is appended meanwhile. For the mover only.
  void pause(std::chrono::milliseconds timeout);
  /// Ends every wait() and pause(), now and from now on (the store is closing).
  void stop_waits();

  /// Records appended and not yet moved.
  std::uint64_t backlog() const noexcept {
    const std::uint64_t moved = moved_.load(std::memory_order_acquire);  // first: never above appended
    return appended_.load(std::memory_order_acquire) - moved;
  }
  /// Makes sure room lies ahead of the writers, so that they rarely have to make it themselves
  /// (called by the mover, off the publish path).
  void prepare();
  /// Refuses appends from now on. When everything appended was moved, deletes the files and
  /// returns their names; otherwise they stay for the next store to finish (once this journal
  /// is destroyed, their locks are free).
  std::vector<std::string> close() noexcept;
  const std::string& dir() const noexcept { return dir_; }

 private:
  struct Segment;

  std::unique_ptr<Segment> open_segment(std::uint64_t at_least);
  // Makes [offset, offset + bytes) of `s` writable; false when the record must go to a new
  // file. Throws when the room cannot be made (the segment is sealed first).
  bool make_room(Segment& s, std::uint64_t offset, std::uint64_t bytes);
  // Zero-fills or allocates `s` up to `bytes`; throws saying `failed` (and why) when it cannot.
  // Caller holds grow_mu_.
  void grow_to(Segment& s, std::uint64_t bytes, std::string_view failed);
  // Replaces `full` as the file being written (unless someone did already); or, when there
  // are max_files already, waits until the mover deleted one and leaves it to the caller to
  // try again.
  void rotate_from(const Segment* full, std::uint64_t at_least);
  // A syncing journal's pwrite of a record (or records) at `offset` of `s`. Throws.
  void write_at(Segment& s, std::uint64_t offset, std::string_view bytes);
  bool ready_locked() const;  // caller holds rotate_mu_ (either way)
  // The one being written and the one being moved, at least: the mover finishes a file only
  // once writers have moved on to the next.
  std::size_t max_files() const noexcept { return std::max<std::size_t>(limits_.max_files, 2); }
  void wake_mover();
  void sync_through(std::uint64_t ticket);

  const std::string dir_;
  const Limits limits_;
  const bool sync_each_;
  // shared: writers and readers of segments_; exclusive: adding or removing a file.
  mutable std::shared_mutex rotate_mu_;
  std::deque<std::unique_ptr<Segment>> segments_;  // oldest first; the last is being written
  Segment* current_ = nullptr;
  std::uint64_t read_at_ = 0;  // the mover's position in segments_.front()
  Mutex grow_mu_;

  std::atomic<std::uint64_t> appended_{0};
  std::atomic<std::uint64_t> moved_{0};

  // The mover sleeps only after saying so; a writer wakes it only then.
  Mutex wake_mu_;
  CondVar wake_cv_;
  CondVar room_cv_;  // a file was moved and deleted (with wake_mu_)
  std::atomic<bool> mover_waiting_{false};
  bool waits_stopped_ CRIER_GUARDED_BY(wake_mu_) = false;

  // Group fdatasync: a write's ticket is covered once `synced_` reaches it. One writer leads
  // each round; the others sleep on `round_` (a futex: no lock to fight over on wake-up).
  std::atomic<std::uint64_t> written_{0};
  std::atomic<int> writing_{0};  // writers between taking room and finishing their pwrite
  std::atomic<std::uint64_t> synced_{0};
  std::atomic<std::uint64_t> round_{0};
  std::atomic<bool> syncing_{false};
};

/// Journal files in `dir` whose process is gone (not locked): calls `finish(name, bytes)` for
/// each while holding its lock, and deletes the file if `finish` returns true.
void recover_orphans(const std::string& dir, const std::function<bool(const std::string&, std::string_view)>& finish);

/// One file of recover_orphans, at `path` and open as `fd` (closed here): finished as
/// recover_orphans says unless its lock is held or it no longer has a name.
void recover_orphan(int fd, const std::string& path,
                    const std::function<bool(const std::string&, std::string_view)>& finish);

/// Journal files in `dir` whose process is gone, looked at without finishing them (for a store
/// opened read-only): calls `look(name, size, read)` for each, where read() returns the file's
/// bytes. The lock is only tested, not held, so a store that finishes the file meanwhile is not
/// kept from it; the bytes may then be of a file that is about to go.
void look_at_orphans(
    const std::string& dir,
    const std::function<void(const std::string&, std::uint64_t, const std::function<std::string()>&)>& look);

}  // namespace crier::sqlite
