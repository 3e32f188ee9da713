#include "change_watch.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "common/thread_name.hpp"
#include "db.hpp"

namespace crier::sqlite {

namespace {
constexpr timespec kIdleLook{0, 100'000'000};  // how often it looks with no sign of a write
constexpr timespec kEagerLook{0, 250'000};     // after a write to the WAL: this often...
constexpr int kEagerLooks = 20;                // ...this many times (5 ms)
constexpr timespec kBlindLook{0, 1'000'000};   // without inotify: always this often
}  // namespace

ChangeWatch::ChangeWatch(const std::string& path, std::chrono::milliseconds busy_timeout,
                         std::function<void()> on_change)
    : path_(path),
      wal_name_(std::filesystem::path(path + "-wal").filename().string()),
      on_change_(std::move(on_change)) {
  db_ = open_connection(path_, SQLITE_OPEN_READONLY, busy_timeout);
  try {
    data_version_ = Stmt(db_, path_, "PRAGMA data_version");  // here, where failing can throw
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_ < 0) {
    data_version_ = Stmt();
    sqlite3_close(db_);
    throw Error(Errc::transport_error, path_ + ": cannot create an eventfd: " + std::strerror(errno));
  }
  inotify_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (inotify_ >= 0) {
    const std::filesystem::path dir = std::filesystem::path(path_).has_parent_path()
                                          ? std::filesystem::path(path_).parent_path()
                                          : std::filesystem::path(".");
    if (inotify_add_watch(inotify_, dir.c_str(), IN_MODIFY) < 0) {
      close(inotify_);
      inotify_ = -1;
    }
  }
  thread_ = std::thread([this] {
    crier::detail::name_this_thread("crier-watch");
    loop();
  });
}

ChangeWatch::~ChangeWatch() {
  const std::uint64_t one = 1;
  (void)!write(wake_, &one, sizeof one);
  thread_.join();
  if (inotify_ >= 0) close(inotify_);
  close(wake_);
  data_version_ = Stmt();
  sqlite3_close(db_);
}

bool ChangeWatch::wal_written() {
  alignas(inotify_event) char buf[4096];
  bool wal = false;
  for (;;) {
    const ssize_t n = read(inotify_, buf, sizeof buf);
    if (n <= 0) return wal;
    for (ssize_t at = 0; at < n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
      if (e->len > 0 && wal_name_ == e->name) wal = true;
      at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
  }
}

void ChangeWatch::loop() {
  pollfd fds[2] = {{wake_, POLLIN, 0}, {inotify_, POLLIN, 0}};
  const nfds_t count = inotify_ >= 0 ? 2 : 1;
  std::int64_t version = -1;
  int eager = 0;
  for (;;) {
    // Eager, it looks every 250 us however often the WAL is written (a busy store writes it
    // thousands of times a second); idle, it waits for a write or the idle period.
    const bool idle = count == 2 && eager == 0;
    if (ppoll(fds, idle ? 2 : 1,
              idle         ? &kIdleLook
              : count == 1 ? &kBlindLook
                           : &kEagerLook,
              nullptr) > 0 &&
        (fds[0].revents & POLLIN))
      return;
    if (count == 2 && wal_written())
      eager = kEagerLooks;
    else if (eager > 0)
      --eager;
    try {
      const bool read = data_version_.step();
      const std::int64_t v = read ? data_version_.int64(0) : version;
      data_version_.reset();
      if (version >= 0 && v != version) on_change_();
      version = v;
    } catch (const Error&) {
      // Busy or failing: the next look tries again.
    }
  }
}

}  // namespace crier::sqlite
