// A real nats-server with JetStream for a test: on 127.0.0.1, a free non-default port, its
// store in a temporary directory; stopped by its PID when the object goes, whatever the test
// did. Alone, or one node of a cluster on loopback.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test {

/// A TCP port on 127.0.0.1 that nothing listens on now.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("no free port");
  ::close(fd);
  return ntohs(a.sin_port);
}

/// The nats-server program: NATS_SERVER in the environment, else the one on the PATH.
inline std::string nats_server_program() {
  if (const char* p = std::getenv("NATS_SERVER")) return p;
  return "nats-server";
}

/// One server's place: its name, client port, and cluster.
struct NatsNode {
  std::string name = "n1";
  int port = 0;               ///< 0: a free one
  int cluster_port = 0;       ///< 0: not in a cluster
  std::vector<int> routes{};  ///< the cluster ports of every node
};

class NatsServer {
 public:
  using Node = NatsNode;
  explicit NatsServer(Node node = {}) : node_(std::move(node)) {
    if (node_.port == 0) node_.port = free_port();
    std::string pattern = (std::filesystem::temp_directory_path() / "crier-nats-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    std::ofstream conf(dir_ / "server.conf");
    conf << "server_name: " << node_.name << "\nlisten: 127.0.0.1:" << node_.port << "\n"
         << "jetstream { store_dir: \"" << (dir_ / "store").string()
         << "\", max_memory_store: 256MB, max_file_store: 2GB }\n";
    if (node_.cluster_port != 0) {
      conf << "cluster { name: crier-test, listen: 127.0.0.1:" << node_.cluster_port << ", routes: [";
      for (std::size_t i = 0; i < node_.routes.size(); ++i)
        conf << (i ? ", " : "") << "nats-route://127.0.0.1:" << node_.routes[i];
      conf << "] }\n";
    }
    conf.close();
    start();
  }
  ~NatsServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  std::string url() const { return "nats://127.0.0.1:" + std::to_string(node_.port); }
  int port() const { return node_.port; }
  pid_t pid() const { return pid_; }

  /// Starts it (again, on the same port and store) and waits until it says it is ready.
  void start() {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    const std::string program = nats_server_program();
    const std::string conf = (dir_ / "server.conf").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
      ::close(out[0]);
      ::close(out[1]);
      ::execlp(program.c_str(), program.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    {
      std::lock_guard lock(mu_);
      ready_ = false;
      exited_ = false;
    }
    // Its log is read to the end (a full pipe would stop it) and kept for failures.
    reader_ = std::thread([this, fd = out[0]] {
      char buf[4096];
      std::string line;
      for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        std::lock_guard lock(mu_);
        log_.append(buf, static_cast<std::size_t>(n));
        if (log_.find("Server is ready") != std::string::npos) ready_ = true;
        cv_.notify_all();
      }
      ::close(fd);
      std::lock_guard lock(mu_);
      exited_ = true;
      cv_.notify_all();
    });
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return ready_ || exited_; }) || !ready_)
      throw std::runtime_error("nats-server did not start (is it installed?):\n" + log_);
    log_.clear();  // what follows "ready" is what a failure needs
  }

  /// SIGTERM (graceful) or SIGKILL, then waits for it.
  void stop(int signal = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    if (reader_.joinable()) reader_.join();
  }
  void kill() { stop(SIGKILL); }

  std::string log() const {
    std::lock_guard lock(mu_);
    return log_;
  }

 private:
  Node node_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string log_;
  bool ready_ = false, exited_ = false;
};

}  // namespace test
