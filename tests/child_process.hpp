// A program the tests run as a separate process, to kill it: started with its stdout on a
// pipe, its first line awaited, reaped.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace test {

struct Child {
  pid_t pid = -1;
  int out = -1;  // its stdout
};

/// Starts args[0] with args; its stdout goes to Child::out.
inline Child spawn(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

/// Blocks until the child printed a whole line (or exited); returns it without its newline.
inline std::string read_line(const Child& c) {
  std::string line;
  char ch;
  while (read(c.out, &ch, 1) == 1 && ch != '\n') line += ch;
  return line;
}

/// Blocks until the child printed its first line (or exited).
inline void wait_ready(const Child& c) { (void)read_line(c); }

/// Waits for the child to end; returns its wait status.
inline int reap(const Child& c) {
  int status = 0;
  waitpid(c.pid, &status, 0);
  close(c.out);
  return status;
}

}  // namespace test
