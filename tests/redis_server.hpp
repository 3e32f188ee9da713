// A real redis-server for a test: on 127.0.0.1, a free non-default port and a unix socket,
// its data (an append-only file) in a temporary directory; stopped by its PID when the object
// goes, whatever the test did. Restartable on the same port and data, as after a crash.
#pragma once

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "scratch_dir.hpp"
#include "server_process.hpp"

namespace test {

class RedisServer {
 public:
  /// `appendfsync`: "always" (every write on disk before the reply), "everysec" or "no".
  /// `password` (no '"' in it): with one, the ACL user "crier" has it too. `config`: more lines
  /// of configuration, after these (a later line overrides an earlier one). `ready`: what its
  /// log says once it is of use (a replica's: "MASTER <-> REPLICA sync: Finished with success").
  explicit RedisServer(std::string appendfsync = "everysec", std::string password = "", std::string config = "",
                       const std::string& ready = "Ready to accept connections")
      : port_(free_port()) {
    std::ofstream conf(dir_ / "redis.conf");
    conf << "bind 127.0.0.1\nport " << port_ << "\nunixsocket " << socket() << "\nunixsocketperm 700\n"
         << "dir " << dir_.path().string() << "\npidfile " << (dir_ / "redis.pid").string() << "\n"
         << "save \"\"\nappendonly yes\nappendfsync " << appendfsync << "\nlogfile \"\"\ndaemonize no\n";
    if (!password.empty())
      conf << "requirepass \"" << password << "\"\nuser crier on \">" << password << "\" ~* &* +@all\n";
    conf << config << "\n";
    conf.close();
    start(ready);
  }
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  std::string socket() const { return (dir_ / "redis.sock").string(); }
  int port() const { return port_; }
  pid_t pid() const { return process_.pid(); }

  /// Starts it (again, on the same port and data) and waits until it accepts connections, or
  /// until its log says `ready` (with "Server initialized": listening, its data not loaded yet).
  void start(const std::string& ready = "Ready to accept connections") {
    const char* program = std::getenv("REDIS_SERVER");
    process_.start({program ? program : "redis-server", (dir_ / "redis.conf").string()}, ready);
  }
  /// SIGTERM (graceful) or SIGKILL, then waits for it.
  void stop(int signal = SIGTERM) { process_.stop(signal); }
  void kill() { stop(SIGKILL); }
  std::string log() const { return process_.log(); }

 private:
  int port_;
  ScratchDir dir_{"crier-redis"};  // before process_: the server goes before its directory
  ServerProcess process_;
};

}  // namespace test
