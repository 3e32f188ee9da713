// Noticing commits made by other processes to a store, without polling it every millisecond.
#pragma once

#include <sqlite3.h>

#include "db.hpp"

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace crier::sqlite {

/// Calls `on_change` soon after a commit to the database at `path` (by another process, an
/// application's outbox, or this store itself). A commit is seen as a change of PRAGMA
/// data_version on a read-only connection of its own, looked at when the database's WAL file
/// is written (inotify on its directory) and then every 250 us for 5 ms (the commit's last
/// step updates the shared index after its last write; a busy store writes the WAL thousands
/// of times a second, and is still looked at only every 250 us), and every 100 ms regardless. An idle store thus costs
/// ten cheap looks a second. Where inotify is not available it looks every millisecond.
class ChangeWatch {
 public:
  ChangeWatch(const std::string& path, std::chrono::milliseconds busy_timeout, std::function<void()> on_change);
  ~ChangeWatch();
  ChangeWatch(const ChangeWatch&) = delete;
  ChangeWatch& operator=(const ChangeWatch&) = delete;

 private:
  void loop();
  // Drains the inotify events: true when one was about the WAL file.
  bool wal_written();

  const std::string path_;
  const std::string wal_name_;  // the WAL file's name within its directory
  std::function<void()> on_change_;
  sqlite3* db_ = nullptr;
  Stmt data_version_;  // PRAGMA data_version on db_
  int inotify_ = -1;   // -1: not available, poll
  int wake_ = -1;      // an eventfd: the destructor's signal to stop
  std::thread thread_;
};

}  // namespace crier::sqlite
