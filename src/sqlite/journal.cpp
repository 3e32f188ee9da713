#include "journal.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "crier/error.hpp"

namespace crier::sqlite {

namespace {

constexpr std::uint32_t kMagic = 0x45495243;  // "CRIE" little-endian
constexpr std::size_t kHeader = 4 + 4 + 4 + 8;  // magic, payload length, crc, jseq
constexpr std::size_t kFields = 9;
constexpr std::uint64_t kGrowBy = 8 << 20;  // zero-filled ahead of a syncing journal's writers

// CRC-32C (Castagnoli), table-driven.
const std::array<std::uint32_t, 256>& crc_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

std::uint32_t crc32c_table(std::string_view bytes) {
  const auto& t = crc_table();
  std::uint32_t crc = ~0u;
  for (unsigned char b : bytes) crc = t[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// The same with SSE 4.2's crc32 instruction, eight bytes at a time.
[[gnu::target("sse4.2")]] std::uint32_t crc32c_sse42(std::string_view bytes) {
  std::uint64_t crc = ~0u;
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    crc = __builtin_ia32_crc32di(crc, v);
  }
  auto c = static_cast<std::uint32_t>(crc);
  for (; n > 0; --n, ++p) c = __builtin_ia32_crc32qi(c, static_cast<unsigned char>(*p));
  return ~c;
}

std::uint32_t crc32c(std::string_view bytes) {
  static const bool hardware = __builtin_cpu_supports("sse4.2");
  return hardware ? crc32c_sse42(bytes) : crc32c_table(bytes);
}

void put32(std::string& out, std::uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
std::uint32_t get32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

[[noreturn]] void io_error(const std::string& what) {
  throw Error(Errc::transport_error, what + ": " + std::strerror(errno) +
                                         (errno == ENOSPC ? " (the disk is full)" : ""));
}

}  // namespace

std::string encode_record(const Envelope& e, std::string_view extensions, std::uint64_t jseq) {
  const std::string_view fields[kFields] = {e.id,         e.type,    e.source,     e.time, e.datacontenttype,
                                            e.dataschema, e.subject, extensions, e.data};
  std::size_t payload = 0;
  for (auto f : fields) payload += 4 + f.size();
  std::string out;
  out.reserve(kHeader + payload);
  put32(out, kMagic);
  put32(out, static_cast<std::uint32_t>(payload));
  put32(out, 0);  // the CRC, below
  out.append(reinterpret_cast<const char*>(&jseq), 8);
  for (auto f : fields) {
    put32(out, static_cast<std::uint32_t>(f.size()));
    out.append(f);
  }
  const std::uint32_t crc = crc32c(std::string_view(out).substr(12));
  std::memcpy(out.data() + 8, &crc, 4);
  return out;
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

Journal::Journal(std::string dir, bool sync_each) : dir_(std::move(dir)), sync_each_(sync_each) {
  if (::mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) io_error(dir_ + ": cannot create the journal directory");
  open_new();
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

void Journal::open_new() {
  // Named by process and a fresh id; the flock says whether the process is alive.
  std::string name = std::to_string(::getpid()) + "-" + Uuid::v7().to_string() + ".log";
  const std::string path = dir_ + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (sync_each_ ? 0 : O_APPEND), 0644);
  if (fd < 0) io_error(path + ": cannot create the journal");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    io_error(path + ": cannot lock the journal");
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  name_ = std::move(name);
  size_.store(0, std::memory_order_relaxed);
  capacity_.store(0, std::memory_order_relaxed);
  if (sync_each_) grow_to(kGrowBy);
}

void Journal::grow_to(std::uint64_t bytes) {
  std::lock_guard lock(grow_mu_);
  static const std::string zeros(1 << 20, '\0');
  std::uint64_t at = capacity_.load(std::memory_order_acquire);
  if (at >= bytes) return;
  while (at < bytes) {
    const ssize_t n = ::pwrite(fd_, zeros.data(), zeros.size(), static_cast<off_t>(at));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      io_error(dir_ + "/" + name_ + ": cannot extend the journal");
    }
    at += static_cast<std::uint64_t>(n);
  }
  if (::fdatasync(fd_) != 0) io_error(dir_ + "/" + name_ + ": cannot sync the journal");
  capacity_.store(at, std::memory_order_release);
}

void Journal::prepare() {
  if (!sync_each_) return;
  std::shared_lock lock(rotate_mu_);
  if (size_.load(std::memory_order_relaxed) + kGrowBy / 2 > capacity_.load(std::memory_order_acquire))
    grow_to(capacity_.load(std::memory_order_acquire) + kGrowBy);
}

std::string Journal::name() const {
  std::shared_lock lock(rotate_mu_);
  return name_;
}

void Journal::append(std::size_t count, const std::function<std::string(std::uint64_t)>& make,
                     const std::function<void(std::uint64_t, std::vector<std::string>&&)>& queue) {
  std::vector<std::string> records;
  records.reserve(count);
  std::uint64_t ticket = 0;
  {
    std::shared_lock lock(rotate_mu_);
    writing_.fetch_add(1, std::memory_order_acq_rel);
    struct Done {
      std::atomic<int>& n;
      ~Done() { n.fetch_sub(1, std::memory_order_acq_rel); }
    } done_writing{writing_};
    const std::uint64_t first = next_jseq_.fetch_add(count, std::memory_order_acq_rel);
    std::string joined;
    try {
      for (std::size_t i = 0; i < count; ++i) records.push_back(make(first + i));
    } catch (...) {
      queue(first, std::vector<std::string>(count));
      throw;
    }
    std::string_view bytes;
    if (count == 1) {
      bytes = records[0];
    } else {
      for (const auto& r : records) joined += r;
      bytes = joined;
    }
    // Appending journals write at the end (O_APPEND); syncing ones at a reserved offset.
    const std::uint64_t offset = sync_each_ ? size_.fetch_add(bytes.size(), std::memory_order_acq_rel) : 0;
    if (sync_each_ && offset + bytes.size() > capacity_.load(std::memory_order_acquire)) {
      try {
        grow_to(offset + bytes.size() + kGrowBy);
      } catch (...) {
        queue(first, std::vector<std::string>(count));
        throw;
      }
    }
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = sync_each_ ? ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                                              static_cast<off_t>(offset + done))
                                   : ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int saved = errno;
        queue(first, std::vector<std::string>(count));  // a torn tail is skipped on recovery
        errno = saved;
        io_error(dir_ + "/" + name_ + ": journal write failed; the event was not stored");
      }
      done += static_cast<std::size_t>(n);
    }
    if (!sync_each_) size_.fetch_add(bytes.size(), std::memory_order_relaxed);
    ticket = written_.fetch_add(1, std::memory_order_acq_rel) + 1;
    queue(first, std::move(records));
  }
  if (sync_each_) sync_through(ticket);
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
    // every write completed so far.
    for (int i = 0; i < 64 && writing_.load(std::memory_order_acquire) > 0; ++i) sched_yield();
    const std::uint64_t covered = written_.load(std::memory_order_acquire);
    int rc;
    {
      std::shared_lock file(rotate_mu_);
      rc = ::fdatasync(fd_);
    }
    const int saved = errno;
    if (rc == 0) {
      std::uint64_t s = synced_.load(std::memory_order_relaxed);
      while (s < covered && !synced_.compare_exchange_weak(s, covered, std::memory_order_acq_rel)) {
      }
    }
    syncing_.store(false, std::memory_order_release);
    round_.fetch_add(1, std::memory_order_acq_rel);
    round_.notify_all();
    if (rc != 0) {
      errno = saved;
      io_error(dir_ + ": journal fdatasync failed; the event may not be durable");
    }
  }
}

std::string Journal::rotate(const std::function<bool()>& ready) {
  std::unique_lock lock(rotate_mu_);
  if (!ready()) return {};
  std::string old = dir_ + "/" + name_;
  const std::string old_name = name_;
  open_new();
  ::unlink(old.c_str());
  return old_name;
}

void Journal::remove() noexcept {
  std::unique_lock lock(rotate_mu_);
  if (fd_ < 0) return;
  ::unlink((dir_ + "/" + name_).c_str());
  ::close(fd_);
  fd_ = -1;
}

void recover_orphans(const std::string& dir,
                     const std::function<bool(const std::string&, std::string_view)>& finish) {
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
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {  // its process is alive (maybe this one)
      ::close(fd);
      continue;
    }
    std::string bytes;
    char buf[1 << 16];
    ssize_t r;
    while ((r = ::read(fd, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<std::size_t>(r));
    if (r == 0 && finish(n, bytes)) ::unlink(path.c_str());
    ::close(fd);
  }
}

}  // namespace crier::sqlite
