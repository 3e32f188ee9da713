#include "change_watch.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "crier/error.hpp"

namespace crier::sqlite {

namespace {
constexpr int kIdleLookMs = 100;   // how often it looks with no sign of a write
constexpr int kEagerLooks = 5;     // after a write to the WAL: looks 1 ms apart
}  // namespace

ChangeWatch::ChangeWatch(const std::string& path, std::function<std::optional<std::int64_t>()> data_version,
                         std::function<void()> on_change)
    : path_(path),
      wal_name_(std::filesystem::path(path + "-wal").filename().string()),
      data_version_(std::move(data_version)),
      on_change_(std::move(on_change)) {
  wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_ < 0)
    throw Error(Errc::transport_error, path_ + ": cannot create an eventfd: " + std::strerror(errno));
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
  thread_ = std::thread([this] { loop(); });
}

ChangeWatch::~ChangeWatch() {
  const std::uint64_t one = 1;
  (void)!write(wake_, &one, sizeof one);
  thread_.join();
  if (inotify_ >= 0) close(inotify_);
  close(wake_);
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
    const int timeout = inotify_ < 0 || eager > 0 ? 1 : kIdleLookMs;
    if (poll(fds, count, timeout) > 0 && (fds[0].revents & POLLIN)) return;
    if (count == 2 && (fds[1].revents & POLLIN) && wal_written())
      eager = kEagerLooks;
    else if (eager > 0)
      --eager;
    const std::optional<std::int64_t> v = data_version_();
    if (!v) continue;  // cannot be read now: the next look tries again
    if (version >= 0 && *v != version) on_change_();
    version = *v;
  }
}

}  // namespace crier::sqlite
