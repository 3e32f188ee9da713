#include "journal.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>

#include "common/mutex.hpp"
#include "crc32c.hpp"
#include "crier/envelope.hpp"
#include "crier/error.hpp"

namespace crier::sqlite {

namespace {

constexpr std::uint32_t kMagic = 0x45495243;    // "CRIE" little-endian
constexpr std::size_t kHeader = 4 + 4 + 4 + 8;  // magic, payload length, crc, jseq
constexpr std::size_t kFields = 9;
constexpr std::uint64_t kGrowBy = 8 << 20;  // allocated ahead of the writers
// What a writer's failure to make room means.
constexpr std::string_view kNotStored = "cannot extend the journal; the event was not stored";

void put32(std::string& out, std::uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
std::uint32_t get32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

constexpr std::size_t padded(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// Computes and stores the CRC of the record at `p` (over its sequence and fields).
void set_crc(char* p) {
  const std::uint32_t crc = crc32c(std::string_view(p + 12, 8 + get32(p + 4)));
  std::memcpy(p + 8, &crc, 4);
}

// A record's first word: its magic once the record is whole. Stored last by the writer and
// read first by the mover, atomically, so a record the mover sees is a whole one.
std::atomic_ref<std::uint32_t> magic_word(char* p) {
  return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(p));
}

[[noreturn]] void io_error(const std::string& what) {
  throw Error(Errc::transport_error,
              what + ": " + std::strerror(errno) + (errno == ENOSPC ? " (the disk is full)" : ""));
}

}  // namespace

std::size_t encode_record(const RecordView& r, std::string& out) {
  const std::string_view fields[kFields] = {r.id,         r.type,    r.source,     r.time, r.datacontenttype,
                                            r.dataschema, r.subject, r.extensions, r.data};
  std::size_t payload = 0;
  for (auto f : fields) payload += 4 + f.size();
  const std::size_t at = out.size();
  out.reserve(at + padded(kHeader + payload));
  put32(out, kMagic);
  put32(out, static_cast<std::uint32_t>(payload));
  put32(out, 0);  // the CRC, below
  out.append(reinterpret_cast<const char*>(&r.jseq), 8);
  for (auto f : fields) {
    put32(out, static_cast<std::uint32_t>(f.size()));
    out.append(f);
  }
  set_crc(out.data() + at);
  out.resize(at + padded(kHeader + payload), '\0');
  return at;
}

std::size_t decode_record(std::string_view bytes, RecordView& out, bool verify) {
  if (bytes.size() < kHeader || get32(bytes.data()) != kMagic) return 0;
  const std::size_t payload = get32(bytes.data() + 4);
  if (bytes.size() < kHeader + payload) return 0;
  const std::string_view body = bytes.substr(12, 8 + payload);
  if (verify && crc32c(body) != get32(bytes.data() + 8)) return 0;
  std::memcpy(&out.jseq, bytes.data() + 12, 8);
  std::string_view* fields[kFields] = {&out.id,         &out.type,    &out.source,     &out.time, &out.datacontenttype,
                                       &out.dataschema, &out.subject, &out.extensions, &out.data};
  std::size_t pos = kHeader;
  const std::size_t end = kHeader + payload;
  for (auto* f : fields) {
    if (pos + 4 > end) return 0;
    const std::size_t len = get32(bytes.data() + pos);
    pos += 4;
    if (pos + len > end) return 0;
    *f = bytes.substr(pos, len);
    pos += len;
  }
  return pos == end ? end : 0;
}

std::vector<RecordView> scan_records(std::string_view bytes) {
  std::vector<RecordView> out;
  std::size_t pos = 0;
  while (pos + kHeader <= bytes.size()) {
    RecordView r;
    if (const std::size_t n = decode_record(bytes.substr(pos), r, true)) {
      out.push_back(r);
      pos += n;
    } else {
      // Torn by a kill mid-write, or the unwritten tail: look for the next record's magic.
      const std::size_t next = bytes.find('C', pos + 1);
      if (next == std::string_view::npos) break;
      pos = next;
    }
  }
  return out;
}

// One journal file, mapped into memory. Writers take room with one atomic add on `reserved`;
// the file is allocated ahead of them up to `capacity` (so a write into the mapping can never
// meet a full disk), and a record that does not fit seals the file at its offset: nothing is
// written there or after, and the next file takes over.
//
// A normal journal's writers copy records into the mapping and store each record's magic last;
// the mover reads them there. A syncing journal's writers use pwrite instead (writes through
// the mapping made every fdatasync round twice as slow) and then set the record's bit in
// `whole`, which the mover reads in place of the magic.
struct Journal::Segment {
  static constexpr std::uint64_t kOpen = ~std::uint64_t{0};

  std::string name;
  int fd = -1;
  char* map = nullptr;
  std::uint64_t map_bytes = 0;
  std::atomic<std::uint64_t> reserved{0};
  std::atomic<std::uint64_t> capacity{0};
  std::atomic<std::uint64_t> seal{kOpen};               // changed under grow_mu_
  std::atomic<bool> synced_final{false};                // a syncing journal's old file, synced after its last write
  std::unique_ptr<std::atomic<std::uint64_t>[]> whole;  // syncing: a bit per 8 bytes, set at record starts
  // Records whose pwrite failed (offset -> bytes): the mover steps over them.
  Mutex holes_mu;
  std::map<std::uint64_t, std::uint64_t> holes;
  std::atomic<bool> has_holes{false};

  ~Segment() {
    if (map != nullptr) ::munmap(map, map_bytes);
    if (fd >= 0) ::close(fd);
  }
  void seal_at(std::uint64_t offset) {
    if (offset < seal.load(std::memory_order_relaxed)) seal.store(offset, std::memory_order_release);
  }
  void mark_whole(std::uint64_t offset) {
    const std::uint64_t bit = offset / 8;
    whole[bit / 64].fetch_or(std::uint64_t{1} << (bit % 64), std::memory_order_seq_cst);
  }
  // Whether a whole record starts at `offset`.
  bool whole_at(std::uint64_t offset) const {
    if (offset + kHeader > capacity.load(std::memory_order_acquire)) return false;
    if (whole) {
      const std::uint64_t bit = offset / 8;
      return (whole[bit / 64].load(std::memory_order_seq_cst) >> (bit % 64)) & 1;
    }
    return magic_word(map + offset).load(std::memory_order_seq_cst) == kMagic;
  }
  // The length of a failed write at `offset`, or 0.
  std::uint64_t hole_at(std::uint64_t offset) {
    if (!has_holes.load(std::memory_order_acquire)) return 0;
    MutexLock lock(holes_mu);
    const auto it = holes.find(offset);
    return it == holes.end() ? 0 : it->second;
  }
  void add_hole(std::uint64_t offset, std::uint64_t bytes) {
    MutexLock lock(holes_mu);
    holes.emplace(offset, bytes);
    has_holes.store(true, std::memory_order_release);
  }
};

Journal::Journal(std::string dir, Limits limits) : dir_(std::move(dir)), limits_(limits), sync_each_(limits.sync_each) {
  if (::mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) io_error(dir_ + ": cannot create the journal directory");
  segments_.push_back(open_segment(0));
  current_ = segments_.back().get();
}

Journal::~Journal() = default;

std::unique_ptr<Journal::Segment> Journal::open_segment(std::uint64_t at_least) {
  // Named by process and a fresh id; the flock says whether the process is alive.
  auto s = std::make_unique<Segment>();
  s->name = std::to_string(::getpid()) + "-" + Uuid::v7().to_string() + ".log";
  // Made under another name and given its own once locked, so that a journal file is locked
  // whenever its process lives: another process opening the store (recover_orphans) took a
  // newborn one for an orphan, deleted it, and this one failed or journaled into a deleted file.
  const std::string path = dir_ + "/" + s->name;
  const std::string newborn = path + ".new";
  s->fd = ::open(newborn.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (s->fd < 0) io_error(newborn + ": cannot create the journal");
  bool named = false;
  try {
    if (::flock(s->fd, LOCK_EX | LOCK_NB) != 0) io_error(newborn + ": cannot lock the journal");
    if (::rename(newborn.c_str(), path.c_str()) != 0) io_error(path + ": cannot name the journal");
    named = true;
    const std::uint64_t page = 4096;
    s->map_bytes = std::max(limits_.file_bytes, (at_least + page - 1) / page * page);
    void* map = ::mmap(nullptr, s->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    if (map == MAP_FAILED) io_error(path + ": cannot map the journal");
    s->map = static_cast<char*>(map);
    if (sync_each_) s->whole = std::make_unique<std::atomic<std::uint64_t>[]>(s->map_bytes / 8 / 64 + 1);
    MutexLock lock(grow_mu_);
    // The first file is made as the store opens: no event is at stake then.
    grow_to(
        *s, std::min(s->map_bytes, std::max(kGrowBy, at_least)),
        at_least == 0 ? "cannot allocate the publish journal, so the store cannot be opened for writing" : kNotStored);
  } catch (...) {
    ::unlink((named ? path : newborn).c_str());
    throw;
  }
  return s;
}

void Journal::grow_to(Segment& s, std::uint64_t bytes, std::string_view failed) {
  std::uint64_t at = s.capacity.load(std::memory_order_acquire);
  if (at >= bytes) return;
  // A syncing journal writes zeros and syncs them, so that its writers' fdatasync writes data
  // blocks only (no allocation, no size change); otherwise allocating the blocks is enough.
  int rc = sync_each_ ? EOPNOTSUPP : ::posix_fallocate(s.fd, static_cast<off_t>(at), static_cast<off_t>(bytes - at));
  if (rc == EOPNOTSUPP || rc == EINVAL) {
    static const std::string zeros(1 << 20, '\0');
    for (std::uint64_t done = at; done < bytes;) {
      const ssize_t n =
          ::pwrite(s.fd, zeros.data(), std::min<std::uint64_t>(zeros.size(), bytes - done), static_cast<off_t>(done));
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        io_error(dir_ + "/" + s.name + ": " + std::string(failed));
      }
      done += static_cast<std::uint64_t>(n);
    }
    rc = sync_each_ && ::fdatasync(s.fd) != 0 ? errno : 0;
  }
  if (rc != 0) {
    errno = rc;
    io_error(dir_ + "/" + s.name + ": " + std::string(failed));
  }
  s.capacity.store(bytes, std::memory_order_release);
}

bool Journal::make_room(Segment& s, std::uint64_t offset, std::uint64_t bytes) {
  MutexLock lock(grow_mu_);
  if (offset >= s.seal.load(std::memory_order_acquire)) return false;
  if (offset + bytes <= s.capacity.load(std::memory_order_acquire)) return true;  // grown meanwhile
  if (offset + bytes > s.map_bytes) {
    s.seal_at(offset);
    return false;
  }
  try {
    grow_to(s, std::min(s.map_bytes, offset + bytes + kGrowBy), kNotStored);
  } catch (...) {
    s.seal_at(offset);  // the next write goes to a new file (and fails while the disk is full)
    throw;
  }
  return true;
}

void Journal::rotate_from(const Segment* full, std::uint64_t at_least) {
  {
    std::unique_lock files(rotate_mu_);
    // Another writer rotated already; or `full` was moved, deleted, and its address reused
    // by the segment now current, which is still open: rotating away from an open segment
    // would leave it unsealed, never finished by the mover, and the journal stuck full.
    if (current_ != full || current_->seal.load(std::memory_order_acquire) == Segment::kOpen) return;
    if (segments_.size() < max_files()) {
      segments_.push_back(open_segment(at_least));
      current_ = segments_.back().get();
      return;
    }
  }
  // The database is not keeping up with the publishers: wait for the mover to finish a file.
  MutexLock lock(wake_mu_);
  const auto until = std::chrono::steady_clock::now() + limits_.wait_for_room;
  auto has_room = [this] {
    std::shared_lock files(rotate_mu_);
    return segments_.size() < max_files();
  };
  bool room = has_room();
  while (!waits_stopped_ && !room && room_cv_.wait_until(wake_mu_, until)) room = has_room();
  if (!room) room = has_room();
  if (waits_stopped_) throw Error(Errc::transport_error, dir_ + ": the store is closing; the event was not stored");
  if (!room)
    throw Error(Errc::transport_error,
                dir_ + ": " + std::to_string(max_files()) + " journal files (" + std::to_string(backlog()) +
                    " events) wait for the database, which is not keeping up; the event was not stored");
}

void Journal::prepare() {
  std::shared_lock files(rotate_mu_);
  if (current_ == nullptr) return;
  Segment& s = *current_;
  MutexLock lock(grow_mu_);
  const std::uint64_t cap = s.capacity.load(std::memory_order_acquire);
  if (s.seal.load(std::memory_order_acquire) == Segment::kOpen && cap < s.map_bytes &&
      s.reserved.load(std::memory_order_acquire) + kGrowBy / 2 > cap)
    grow_to(s, std::min(s.map_bytes, cap + kGrowBy), "cannot extend the journal ahead of the writers");
}

void Journal::append(std::span<const RecordView> records) {
  // Encoded before room is taken, so that nothing between taking room and filling it can fail.
  thread_local std::string bytes;
  thread_local std::vector<std::size_t> starts;
  bytes.clear();
  starts.clear();
  for (const RecordView& r : records) starts.push_back(encode_record(r, bytes));
  const std::uint64_t size = bytes.size();
  std::uint64_t ticket = 0;
  for (;;) {
    std::shared_lock files(rotate_mu_);
    if (current_ == nullptr)
      throw Error(Errc::transport_error, dir_ + ": the journal is closed; the event was not stored");
    Segment& s = *current_;
    const std::uint64_t offset = s.reserved.fetch_add(size, std::memory_order_acq_rel);
    if (offset + size > s.capacity.load(std::memory_order_acquire) && !make_room(s, offset, size)) {
      files.unlock();
      rotate_from(&s, size);
      continue;
    }
    for (const std::size_t at : starts) {
      const std::uint64_t jseq = offset + at + 1;  // increasing through the file
      std::memcpy(bytes.data() + at + 12, &jseq, 8);
      set_crc(bytes.data() + at);
    }
    if (sync_each_) {
      writing_.fetch_add(1, std::memory_order_acq_rel);  // the next fdatasync round waits a moment for it
      struct Done {
        std::atomic<int>& n;
        ~Done() { n.fetch_sub(1, std::memory_order_acq_rel); }
      } done_writing{writing_};
      write_at(s, offset, bytes);  // throws, leaving a hole, when the write fails
      appended_.fetch_add(records.size(), std::memory_order_acq_rel);
      for (const std::size_t at : starts) s.mark_whole(offset + at);
      ticket = written_.fetch_add(1, std::memory_order_acq_rel) + 1;
    } else {
      // Each record but its magic (the file holds zeros there), then the magics, atomically:
      // the mover reads a magic only that way, and then finds the whole record behind it.
      char* to = s.map + offset;
      for (std::size_t i = 0; i < starts.size(); ++i) {
        const std::size_t end = i + 1 < starts.size() ? starts[i + 1] : size;
        std::memcpy(to + starts[i] + 4, bytes.data() + starts[i] + 4, end - starts[i] - 4);
      }
      appended_.fetch_add(records.size(), std::memory_order_acq_rel);
      for (const std::size_t at : starts) magic_word(to + at).store(kMagic, std::memory_order_seq_cst);
    }
    break;
  }
  if (bytes.capacity() > (1 << 20)) std::string().swap(bytes);  // after an unusually large event
  if (mover_waiting_.load(std::memory_order_seq_cst)) wake_mover();
  if (sync_each_) sync_through(ticket);
}

void Journal::write_at(Segment& s, std::uint64_t offset, std::string_view bytes) {
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::pwrite(s.fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int saved = errno;
      s.add_hole(offset, bytes.size());  // a torn record there fails its CRC on recovery
      errno = saved;
      io_error(dir_ + "/" + s.name + ": journal write failed; the event was not stored");
    }
    done += static_cast<std::size_t>(n);
  }
}

bool Journal::ready_locked() const {
  if (segments_.empty()) return false;
  Segment& s = *segments_.front();
  if (s.whole_at(read_at_) || s.hole_at(read_at_) != 0) return true;
  return &s != current_ && read_at_ >= s.seal.load(std::memory_order_acquire);
}

bool Journal::take(Batch& batch, std::size_t max) {
  batch.records.clear();
  batch.finishes_file = false;
  std::shared_lock files(rotate_mu_);
  if (segments_.empty()) return false;
  Segment& s = *segments_.front();
  batch.file = s.name;
  std::uint64_t at = read_at_;
  while (batch.records.size() < max) {
    if (!s.whole_at(at)) {
      const std::uint64_t hole = s.hole_at(at);
      if (hole == 0) break;
      at += hole;
      continue;
    }
    RecordView r;
    // Written by this process: whole, and not checked again.
    const std::size_t n =
        decode_record(std::string_view(s.map + at, s.capacity.load(std::memory_order_acquire) - at), r, false);
    if (n == 0) break;
    batch.records.push_back(r);
    at += padded(n);
  }
  batch.end = at;
  batch.progress = at + 1;
  batch.finishes_file = &s != current_ && at >= s.seal.load(std::memory_order_acquire);
  return !batch.records.empty() || batch.finishes_file;
}

void Journal::moved(const Batch& batch) {
  moved_.fetch_add(batch.records.size(), std::memory_order_acq_rel);
  read_at_ = batch.end;
  if (!batch.finishes_file) return;
  std::unique_ptr<Segment> done;
  {
    std::unique_lock files(rotate_mu_);
    done = std::move(segments_.front());
    segments_.pop_front();
    read_at_ = 0;
  }
  ::unlink((dir_ + "/" + done->name).c_str());
  { MutexLock lock(wake_mu_); }
  room_cv_.notify_all();
}

void Journal::wait(std::chrono::milliseconds timeout) {
  MutexLock lock(wake_mu_);
  mover_waiting_.store(true, std::memory_order_seq_cst);
  bool ready;
  {
    std::shared_lock files(rotate_mu_);
    ready = ready_locked();
  }
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!ready && !waits_stopped_ && mover_waiting_.load(std::memory_order_acquire) &&
         wake_cv_.wait_until(wake_mu_, until)) {
  }
  mover_waiting_.store(false, std::memory_order_release);
}

void Journal::pause(std::chrono::milliseconds timeout) {
  MutexLock lock(wake_mu_);
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!waits_stopped_ && wake_cv_.wait_until(wake_mu_, until)) {
  }
}

void Journal::wake_mover() {
  {
    MutexLock lock(wake_mu_);
    mover_waiting_.store(false, std::memory_order_release);
  }
  wake_cv_.notify_all();
}

void Journal::stop_waits() {
  {
    MutexLock lock(wake_mu_);
    waits_stopped_ = true;
  }
  wake_cv_.notify_all();
  room_cv_.notify_all();
}

std::vector<std::string> Journal::close() noexcept {
  std::unique_lock files(rotate_mu_);  // no writer is between taking room and counting its record
  current_ = nullptr;
  std::vector<std::string> names;
  if (backlog() != 0) return names;
  for (const auto& s : segments_) {
    ::unlink((dir_ + "/" + s->name).c_str());
    names.push_back(s->name);
  }
  segments_.clear();
  return names;
}

void Journal::sync_through(std::uint64_t ticket) {
  for (;;) {
    const std::uint64_t round = round_.load(std::memory_order_acquire);
    if (synced_.load(std::memory_order_acquire) >= ticket) return;
    if (syncing_.exchange(true, std::memory_order_acq_rel)) {
      round_.wait(round, std::memory_order_acquire);  // the leader's round ends
      continue;
    }
    // Lead: let writers already under way finish (they share this fdatasync), then sync
    // every write completed so far: the current file and any older one not synced since its
    // last write.
    for (int i = 0; i < 64 && writing_.load(std::memory_order_acquire) > 0; ++i) sched_yield();
    const std::uint64_t covered = written_.load(std::memory_order_acquire);
    int rc = 0;
    std::string failed;
    {
      std::shared_lock files(rotate_mu_);
      for (const auto& s : segments_) {
        if (s->synced_final.load(std::memory_order_acquire)) continue;
        const bool old = s.get() != current_;  // rotated away: its writers are done
        if (::fdatasync(s->fd) != 0) {
          rc = errno;
          failed = s->name;
          break;
        }
        if (old) s->synced_final.store(true, std::memory_order_release);
      }
    }
    if (rc == 0) {
      std::uint64_t s = synced_.load(std::memory_order_relaxed);
      while (s < covered && !synced_.compare_exchange_weak(s, covered, std::memory_order_acq_rel)) {
      }
    }
    syncing_.store(false, std::memory_order_release);
    round_.fetch_add(1, std::memory_order_acq_rel);
    round_.notify_all();
    if (rc != 0) {
      errno = rc;
      io_error(dir_ + "/" + failed + ": journal fdatasync failed; the event may not be durable");
    }
  }
}

namespace {

// Opens each journal file in `dir` (read-only) and hands it to `each`, which closes it.
void for_each_journal_file(const std::string& dir, const std::function<void(int, const std::string&)>& each) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".log") == 0) names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    const std::string path = dir + "/" + n;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) each(fd, path);
  }
}

// Whether the file open as `fd` is an orphan, taking its lock (`lock_op`: LOCK_EX or LOCK_SH)
// when it is; `st` is then its status. Locked: its process is alive (maybe this one).
// Without a name: its process finished it, deleted it and let go of it after `fd` was opened;
// its progress row may be gone too, so reading it would count every event in it twice.
bool lock_orphan(int fd, int lock_op, struct stat& st) {
  return ::flock(fd, lock_op | LOCK_NB) == 0 && ::fstat(fd, &st) == 0 && st.st_nlink != 0;
}

// The whole file from its start; false when a read failed.
bool read_all(int fd, std::string& bytes) {
  char buf[1 << 16];
  ssize_t r;
  while ((r = ::read(fd, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<std::size_t>(r));
  return r == 0;
}

std::string name_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

}  // namespace

void recover_orphans(const std::string& dir, const std::function<bool(const std::string&, std::string_view)>& finish) {
  for_each_journal_file(dir, [&](int fd, const std::string& path) { recover_orphan(fd, path, finish); });
}

void recover_orphan(int fd, const std::string& path,
                    const std::function<bool(const std::string&, std::string_view)>& finish) {
  struct stat st {};
  std::string bytes;
  if (lock_orphan(fd, LOCK_EX, st) && read_all(fd, bytes) && finish(name_of(path), bytes)) ::unlink(path.c_str());
  ::close(fd);
}

void look_at_orphans(
    const std::string& dir,
    const std::function<void(const std::string&, std::uint64_t, const std::function<std::string()>&)>& look) {
  for_each_journal_file(dir, [&](int fd, const std::string& path) {
    struct stat st {};
    if (lock_orphan(fd, LOCK_SH, st) && ::flock(fd, LOCK_UN) == 0) {
      look(name_of(path), static_cast<std::uint64_t>(st.st_size), [fd] {
        std::string bytes;
        return read_all(fd, bytes) ? bytes : std::string();
      });
    }
    ::close(fd);
  });
}

}  // namespace crier::sqlite
