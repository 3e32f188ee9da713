// Running the crier program from tests: once to completion (stdin given, stdout and stderr
// kept apart), or as a server whose first line of output says where it listens.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <crier/sqlite.hpp>
#include <nlohmann/json.hpp>

#include "durable_events.hpp"

namespace test {

struct Outcome {
  int code = -1;
  std::string out, err;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

namespace detail {
// In a forked child: the environment given, then `crier ARGS...`.
[[noreturn]] inline void exec_crier(const std::vector<std::string>& args,
                                    const std::map<std::string, std::string>& env) {
  for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
  std::vector<char*> argv{const_cast<char*>(CRIER_CLI)};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(CRIER_CLI, argv.data());
  _exit(127);
}
inline int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
}  // namespace detail

/// Runs `crier ARGS...` with `input` on its stdin (not a terminal) and `env` added to its
/// environment; returns its exit code and output.
inline Outcome run_crier(const ScratchDir& dir, const std::vector<std::string>& args, const std::string& input = "",
                         const std::map<std::string, std::string>& env = {}) {
  const std::string in = dir.file("stdin"), out = dir.file("stdout"), err = dir.file("stderr");
  std::ofstream(in, std::ios::binary) << input;
  const pid_t pid = fork();
  if (pid == 0) {
    const int fi = open(in.c_str(), O_RDONLY), fo = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600),
              fe = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    detail::exec_crier(args, env);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return {detail::exit_code(status), read_file(out), read_file(err)};
}

/// `crier ARGS...` running beside the test: its stdin is a pipe the test writes, its stdout
/// a pipe the test reads line by line, its stderr a file. Killed (SIGKILL) if still running
/// when destroyed.
class RunningCrier {
 public:
  RunningCrier(const ScratchDir& dir, const std::vector<std::string>& args) : err_path_(dir.file("running.stderr")) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      const int fe = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(fe, 2);
      close(in[1]);
      close(out[0]);
      detail::exec_crier(args, {});
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = fdopen(out[0], "r");
  }
  ~RunningCrier() {
    if (pid_ > 0 && !finished_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdin_ >= 0) close(stdin_);
    if (stdout_) fclose(stdout_);
  }
  RunningCrier(const RunningCrier&) = delete;
  RunningCrier& operator=(const RunningCrier&) = delete;

  /// The next line it printed (without the newline); nullopt at the end of its output.
  std::optional<std::string> line() {
    char buf[4096];
    if (!fgets(buf, sizeof buf, stdout_)) return std::nullopt;
    std::string l = buf;
    if (!l.empty() && l.back() == '\n') l.pop_back();
    return l;
  }
  void write(const std::string& text) {
    if (::write(stdin_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw std::runtime_error("writing to crier's stdin failed");
  }
  void close_stdin() {
    close(stdin_);
    stdin_ = -1;
  }
  void signal(int sig) { kill(pid_, sig); }
  /// Waits for it to end; its exit code (128 + signal when a signal ended it).
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    finished_ = true;
    return detail::exit_code(status);
  }
  std::string err() const { return read_file(err_path_); }
  /// Whether its stderr came to hold `text` within `timeout`. Its stderr is a file, which
  /// wakes no one: it is looked at every 20 ms.
  bool wait_for_err(const std::string& text, std::chrono::milliseconds timeout) const {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (err().find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a file, not a guess at timing
    }
    return true;
  }
  pid_t pid() const { return pid_; }

 private:
  std::string err_path_;
  pid_t pid_ = -1;
  int stdin_ = -1;
  FILE* stdout_ = nullptr;
  bool finished_ = false;
};

/// Stores what is not UTF-8 where the tools show it, beside what CliTest stores: a dead
/// letter whose error is Latin-1 (a handler's message about "Müller"), an event stored before
/// crier refused such attributes (subject "order-" and byte 0xFF, written through the
/// transport: a Bus refuses it), and, newest, an event whose data has "é" across byte 300,
/// where the dashboard cuts the data it shows. Returns that event's data.
inline std::string store_text_that_is_not_utf8(const std::string& path) {
  auto store = crier::sqlite::open(path);
  crier::Bus bus{store};
  {
    auto legacy = bus.subscribe<Job>("legacy", [](const Job& j) {
      if (j.n == 21) throw crier::PermanentError("customer M\xfcller has no account");
    });
    bus.publish(Job{21, "M\xc3\xbcller"});
    if (!bus.flush(std::chrono::seconds(30))) throw std::runtime_error("the legacy subscriber did not finish");
  }
  crier::Envelope old = crier::new_envelope(crier::event_type_v<Job>, R"({"n":22,"note":"old"})", "application/json");
  old.subject = "order-\xff";
  store->append({&old, 1});
  const Job cut{23, std::string(283, 'x') + "\xc3\xa9 and more"};
  const std::string data = nlohmann::json(cut).dump();
  if (data.find("\xc3\xa9") != 299) throw std::logic_error("the test's data moved: 'é' is not at byte 299");
  bus.publish(cut);
  return data;
}

/// A bus's status (`crier status --json`, the dashboard's /api/status): its subscribers by name.
inline std::map<std::string, nlohmann::json> subscribers_by_name(const nlohmann::json& status) {
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& s : status["subscribers"]) by_name[s["subscriber"].get<std::string>()] = s;
  return by_name;
}

// Leaves `bus` as the demo leaves a store: 20 jobs; "billing" handled them all but
// dead-lettered the 4 whose n is a multiple of 5; "audit" subscribed once, read nothing since
// (lag 20).
inline void fill_like_the_demo(crier::Bus& bus) {
  {
    auto audit = bus.subscribe<Job>("audit", [](const Job&) {});
    audit.unsubscribe();
  }
  auto billing = bus.subscribe<Job>("billing", [](const Job& j) {
    if (j.n % 5 == 0) throw crier::PermanentError("job " + std::to_string(j.n) + " has no price");
  });
  for (int i = 1; i <= 20; ++i) bus.publish(Job{i, "job " + std::to_string(i)});
  ASSERT_TRUE(bus.drain(std::chrono::seconds(30)).complete);
}

// A store as the demo leaves one (fill_like_the_demo).
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    crier::Bus bus{crier::sqlite::open(path)};
    fill_like_the_demo(bus);
  }

  ScratchDir dir;
  const std::string path = dir.file("orders.db");
  const std::string job = std::string(crier::event_type_v<Job>);
};

}  // namespace test
