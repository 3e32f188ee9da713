// The dashboard's HTTP side: one page and its assets (embedded in the program), a JSON API,
// a server-sent event stream of the bus's state, and /metrics. Who may ask what is decided
// here: a Host the server answers to, a token when one is set, and state-changing requests
// only as same-origin JSON POSTs carrying the dashboard's own header (no CORS is ever
// answered, so a foreign page cannot send one).
#pragma once

#include <memory>
#include <string>

#include "bus_watch.hpp"

namespace crier::cli {

class DashboardServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 8080;         ///< 0: any free port
    std::string token{};     ///< required on every request when not empty
    bool read_only = false;  ///< no redrive, edit or purge
  };

  /// Binds the address at once: throws Failure saying why it cannot (taken, no such address,
  /// or a non-loopback address without a token).
  DashboardServer(std::shared_ptr<Transport> bus, BusWatch& watch, Options options);
  ~DashboardServer();

  /// The port bound (the one chosen when Options::port was 0).
  int port() const;
  /// Serves until stop(); returns after every request under way has been answered.
  void serve();
  /// Makes serve() return; safe from any thread, also before serve() started.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// True for an address only this machine can reach (127.0.0.0/8, ::1, localhost).
bool is_loopback(const std::string& host);

}  // namespace crier::cli
