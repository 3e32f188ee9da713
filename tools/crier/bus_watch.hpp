// What the dashboard shows of a bus, looked at every interval on a thread of its own: where
// every subscriber stands, lag over the last minutes, events per type over the last minute,
// the newest events. Readers get the latest look as JSON or Prometheus text, and can wait for
// the next one.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli.hpp"

namespace crier::cli {

class BusWatch {
 public:
  struct Options {
    std::chrono::milliseconds interval{1000};  ///< time between looks
    std::size_t history = 300;                 ///< looks kept for the lag chart
    std::size_t recent = 25;                   ///< newest events kept for the live tail
  };

  /// Takes the first look before it returns (so that a server started next has something to
  /// show), then looks again every interval until destroyed.
  BusWatch(std::shared_ptr<Transport> bus, std::string name, Options options);
  ~BusWatch();
  BusWatch(const BusWatch&) = delete;
  BusWatch& operator=(const BusWatch&) = delete;

  /// The latest look: subscribers, event types with their rates, lag history, newest events,
  /// and the error of the last look if it failed (the one before it is kept then).
  std::string snapshot_json() const;
  /// The latest look in the Prometheus text format (version 0.0.4).
  std::string prometheus() const;
  /// How many looks were taken; snapshot_json() belongs to this one.
  std::uint64_t version() const;
  /// Waits until a look newer than `seen` is taken, the watch stops, or `timeout` passes;
  /// returns version().
  std::uint64_t wait_newer(std::uint64_t seen, std::chrono::milliseconds timeout) const;
  /// Asks for a look now (after an action changed the bus).
  void look_now();
  /// Makes every wait_newer(), now and later, return at once (a server shutting down).
  void release_readers();

 private:
  struct Look;
  void run();
  void look();

  std::shared_ptr<Transport> bus_;
  const std::string name_;
  const Options options_;

  // Only the watch's thread touches these.
  std::deque<std::pair<std::int64_t, std::string>> last_minute_;  // (time ms, type), oldest first
  std::string newest_seen_;                                       // position of the newest counted
  std::deque<std::pair<std::int64_t, std::map<std::string, std::uint64_t>>> lag_history_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool look_asked_ = false;
  bool readers_released_ = false;
  std::uint64_t version_ = 0;
  std::string snapshot_;
  std::string prometheus_;
  std::uint64_t failed_looks_ = 0;
  std::thread thread_;
};

}  // namespace crier::cli
