// The publish journal: how a publish becomes durable without waiting for a SQLite commit.
//
// A publish appends one self-checking record to this store's journal file with one write(2)
// (for Durability::full, then waits for a shared fdatasync) and returns: from then on the
// event survives the process being killed. A mover thread inserts journaled records into the
// database in large transactions, recording in the same transaction how far it got; a
// journal whose process died (its flock is free) is finished by the next store that looks.
// This is what lets publish cost one system call instead of one transaction hand-off.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "crier/envelope.hpp"

namespace crier::sqlite {

/// A record's fields, viewing the bytes of its encoding.
struct RecordView {
  std::uint64_t jseq = 0;
  std::string_view id, type, source, time, datacontenttype, dataschema, subject, extensions, data;
};

/// The journal encoding of one event: magic, payload length, CRC-32C, journal sequence, then
/// each field as a 32-bit length and its bytes.
std::string encode_record(const Envelope& e, std::string_view extensions, std::uint64_t jseq);
/// Decodes the record at the start of `bytes` (as encode_record made it). Returns its length,
/// or 0 when the bytes there are not one whole record (or, with `verify`, not intact).
std::size_t decode_record(std::string_view bytes, RecordView& out, bool verify);
/// Every intact record in a journal file's bytes, skipping torn or garbled stretches.
std::vector<RecordView> scan_records(std::string_view bytes);

/// This store's own journal file, locked while it lives.
class Journal {
 public:
  /// Creates a new journal file in `dir` (made if missing). Throws Error(transport_error).
  Journal(std::string dir, bool sync_each);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  /// Assigns journal sequences to `count` records that `make(jseq)` builds, appends them with
  /// one write, hands them to `queue` (under the rotation lock, so a rotation never loses
  /// one), and for a syncing journal returns once they are on the disk. When the write fails
  /// it hands `queue` empty records (the mover skips those sequences) and throws
  /// Error(transport_error): nothing was acknowledged.
  void append(std::size_t count, const std::function<std::string(std::uint64_t)>& make,
              const std::function<void(std::uint64_t first, std::vector<std::string>&&)>& queue);

  /// The current file's name (without the directory): the key of its progress row.
  std::string name() const;
  /// Bytes in the current file.
  std::uint64_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  /// Starts a new file when `ready()` (checked with every publisher held off) says the
  /// current one is fully moved; returns the old file's name, or "" when not rotated.
  std::string rotate(const std::function<bool()>& ready);
  /// Deletes the current file (after everything in it was moved) and closes it.
  void remove() noexcept;
  /// A syncing journal: makes sure zero-filled space lies ahead of the writers, so that their
  /// fdatasync writes data blocks only (called by the mover, off the publish path).
  void prepare();
  const std::string& dir() const noexcept { return dir_; }

 private:
  void open_new();
  void sync_through(std::uint64_t ticket);
  // Zero-fills the file up to `bytes` and syncs that. Caller holds rotate_mu_ (either way).
  void grow_to(std::uint64_t bytes);

  const std::string dir_;
  const bool sync_each_;
  mutable std::shared_mutex rotate_mu_;  // shared: appends; exclusive: switching files
  int fd_ = -1;                  // guarded by rotate_mu_
  std::string name_;             // guarded by rotate_mu_
  std::atomic<std::uint64_t> next_jseq_{1};
  std::atomic<std::uint64_t> size_{0};  // bytes written, or reserved (syncing journals)
  // Syncing journals write at reserved offsets into zero-filled space: a file that does not
  // grow needs no metadata written by each fdatasync.
  std::mutex grow_mu_;
  std::atomic<std::uint64_t> capacity_{0};

  // Group fdatasync: a write's ticket is covered once `synced_` reaches it. One writer leads
  // each round; the others sleep on `round_` (a futex: no lock to fight over on wake-up).
  std::atomic<std::uint64_t> written_{0};
  std::atomic<int> writing_{0};  // writers between taking a sequence and finishing their write
  std::atomic<std::uint64_t> synced_{0};
  std::atomic<std::uint64_t> round_{0};
  std::atomic<bool> syncing_{false};
};

/// Journal files in `dir` whose process is gone (not locked): calls `finish(name, bytes)` for
/// each while holding its lock, and deletes the file if `finish` returns true.
void recover_orphans(const std::string& dir, const std::function<bool(const std::string&, std::string_view)>& finish);

}  // namespace crier::sqlite
