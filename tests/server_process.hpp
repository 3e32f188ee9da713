// A server program a test runs: started with its output read (and kept for failures) until
// it says it is ready, stopped by its PID when the object goes, whatever the test did, and
// killed by the kernel should the test process die first. The
// NATS and Redis servers of the tests are made of it.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test {

/// A loopback port where nothing listens, for as long as the object lives: bound and never
/// listening, so a connection to it is refused, and free_port() gives it to no other test
/// meanwhile (a port that was only free when asked was a concurrent test's server's by the
/// time a test connected to it, once, under ctest -j2).
class RefusingPort {
 public:
  RefusingPort() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd_ >= 0) ::close(fd_);
      throw std::runtime_error("no free port");
    }
    port_ = ntohs(a.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  int port() const { return port_; }

 protected:
  int fd_;

 private:
  int port_ = 0;
};

/// A TCP port on 127.0.0.1 that takes connections and never answers: a stuck server, or one
/// of another protocol that waits for its client to speak first.
class SilentPort : public RefusingPort {
 public:
  SilentPort() { ::listen(fd_, 16); }
};

/// A TCP port on 127.0.0.1 that nothing listens on now (a RefusingPort let go of).
inline int free_port() { return RefusingPort().port(); }

class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  /// Runs `argv` (argv[0] looked up on the PATH) and waits up to 30 s until its output says
  /// `ready`; throws with its output when it does not.
  void start(const std::vector<std::string>& argv, const std::string& ready) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      // Dies with the test process, also when that one crashes or is killed (the forking
      // thread is the test's main thread, which lives as long as the process).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
      ::close(out[0]);
      ::close(out[1]);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    {
      std::lock_guard lock(mu_);
      ready_ = false;
      exited_ = false;
    }
    // Its output is read to the end (a full pipe would stop it) and kept for failures.
    reader_ = std::thread([this, fd = out[0], ready] {
      char buf[4096];
      for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        std::lock_guard lock(mu_);
        log_.append(buf, static_cast<std::size_t>(n));
        if (log_.find(ready) != std::string::npos) ready_ = true;
        cv_.notify_all();
      }
      ::close(fd);
      std::lock_guard lock(mu_);
      exited_ = true;
      cv_.notify_all();
    });
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return ready_ || exited_; }) || !ready_)
      throw std::runtime_error(argv[0] + " did not start (is it installed?):\n" + log_);
    log_.clear();  // what follows "ready" is what a failure needs
  }

  /// Sends `signal` (SIGTERM: a graceful stop; SIGKILL) and waits for it to end.
  void stop(int signal = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    if (reader_.joinable()) reader_.join();
  }

  pid_t pid() const { return pid_; }
  std::string log() const {
    std::lock_guard lock(mu_);
    return log_;
  }

 private:
  pid_t pid_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string log_;
  bool ready_ = false, exited_ = false;
};

}  // namespace test
