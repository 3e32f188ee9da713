// Noticing commits made by other processes to a store, without polling it every millisecond.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace crier::sqlite {

/// Calls `on_change` soon after another connection (another process, or another store object
/// of this one) commits to the database at `path`. A commit is seen as a change of
/// `data_version()` (PRAGMA data_version on the store's connection, which changes with every
/// commit but its own; nullopt when it cannot be read), which is looked at when the database's
/// WAL file is written (inotify on its directory), for a few milliseconds after that (the
/// commit's last step updates the shared index after its last write), and every 100 ms
/// regardless. An idle store thus costs ten cheap looks a second. Where inotify is not
/// available it looks every millisecond.
class ChangeWatch {
 public:
  ChangeWatch(const std::string& path, std::function<std::optional<std::int64_t>()> data_version,
              std::function<void()> on_change);
  ~ChangeWatch();
  ChangeWatch(const ChangeWatch&) = delete;
  ChangeWatch& operator=(const ChangeWatch&) = delete;

 private:
  void loop();
  // Drains the inotify events: true when one was about the WAL file.
  bool wal_written();

  const std::string path_;
  const std::string wal_name_;  // the WAL file's name within its directory
  std::function<std::optional<std::int64_t>()> data_version_;
  std::function<void()> on_change_;
  int inotify_ = -1;  // -1: not available, poll
  int wake_ = -1;     // an eventfd: the destructor's signal to stop
  std::thread thread_;
};

}  // namespace crier::sqlite
