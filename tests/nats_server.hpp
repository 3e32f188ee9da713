// A real nats-server with JetStream for a test: on 127.0.0.1, a free non-default port, its
// store in a temporary directory; stopped by its PID when the object goes, whatever the test
// did. Alone, or one node of a cluster on loopback.
#pragma once

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "scratch_dir.hpp"
#include "server_process.hpp"

namespace test {

/// The nats-server program: NATS_SERVER in the environment, else the one on the PATH.
inline std::string nats_server_program() {
  if (const char* p = std::getenv("NATS_SERVER")) return p;
  return "nats-server";
}

/// One server's place: its name, client port, and cluster.
struct NatsNode {
  std::string name = "n1";
  int port = 0;                        ///< 0: a free one
  int cluster_port = 0;                ///< 0: not in a cluster
  std::vector<int> routes{};           ///< the cluster ports of every node
  std::string config{};                ///< more of the server's configuration (authorization, tls)
  std::string max_file_store = "2GB";  ///< the server's JetStream file storage limit
  std::string jetstream_domain{};      ///< empty: none
  bool jetstream = true;               ///< false: a server started without JetStream
};

class NatsServer {
 public:
  using Node = NatsNode;
  explicit NatsServer(Node node = {}) : node_(std::move(node)) {
    if (node_.port == 0) node_.port = free_port();
    std::ofstream conf(dir_ / "server.conf");
    conf << "server_name: " << node_.name << "\nlisten: 127.0.0.1:" << node_.port << "\n";
    if (node_.jetstream) {
      conf << "jetstream { store_dir: \"" << (dir_ / "store").string()
           << "\", max_memory_store: 256MB, max_file_store: " << node_.max_file_store;
      if (!node_.jetstream_domain.empty()) conf << ", domain: " << node_.jetstream_domain;
      conf << " }\n";
    }
    conf << node_.config << "\n";
    if (node_.cluster_port != 0) {
      conf << "cluster { name: crier-test, listen: 127.0.0.1:" << node_.cluster_port << ", routes: [";
      for (std::size_t i = 0; i < node_.routes.size(); ++i)
        conf << (i ? ", " : "") << "nats-route://127.0.0.1:" << node_.routes[i];
      conf << "] }\n";
    }
    conf.close();
    start();
  }
  ~NatsServer() { stop(); }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(node_.port); }
  int port() const { return node_.port; }
  pid_t pid() const { return process_.pid(); }

  /// Starts it (again, on the same port and store) and waits until it says it is ready.
  void start() { process_.start({nats_server_program(), "-c", (dir_ / "server.conf").string()}, "Server is ready"); }

  /// SIGTERM (graceful) or SIGKILL, then waits for it.
  void stop(int signal = SIGTERM) { process_.stop(signal); }
  void kill() { stop(SIGKILL); }

  std::string log() const { return process_.log(); }

 private:
  Node node_;
  ScratchDir dir_{"crier-nats"};  // before process_: the server goes before its directory
  ServerProcess process_;
};

}  // namespace test
