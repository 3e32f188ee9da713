// Consumer ids of the SQLite store: whether the process an id names is gone, so that another
// consumer takes its claims at once.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "../src/sqlite/owner.hpp"

namespace {

using crier::sqlite::new_owner_id;
using crier::sqlite::owner_alive;

// The id a child process made for itself, after that process exited and was reaped.
std::string id_of_a_process_that_is_gone() {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return {};
  const pid_t child = ::fork();
  if (child == 0) {
    const std::string id = new_owner_id();
    (void)!::write(pipe_fds[1], id.data(), id.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string id;
  char buf[256];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) id.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  return id;
}

// "<pid>.<start>.<pid namespace>.<uuid>" with field `index` replaced, or removed when `with`
// is null.
std::string with_field(const std::string& id, std::size_t index, const char* with) {
  std::string out;
  std::size_t at = 0, field = 0;
  for (;;) {
    const auto dot = id.find('.', at);
    const std::string part = id.substr(at, dot == std::string::npos ? dot : dot - at);
    if (field != index)
      out += (out.empty() ? "" : ".") + part;
    else if (with)
      out += (out.empty() ? "" : ".") + std::string(with);
    if (dot == std::string::npos) return out;
    at = dot + 1;
    ++field;
  }
}

TEST(ConsumerId, NamesThisProcessWhichIsAlive) {
  const std::string id = new_owner_id();
  EXPECT_EQ(id.rfind(std::to_string(::getpid()) + ".", 0), 0u) << id;
  EXPECT_TRUE(owner_alive(id)) << id;
}

TEST(ConsumerId, AProcessThatIsGoneIsToldAtOnce) {
  const std::string id = id_of_a_process_that_is_gone();
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(owner_alive(id)) << id;
  EXPECT_FALSE(owner_alive(with_field(id, 2, nullptr))) << "an id of crier before 2026-12-07 (no namespace)";
}

// Containers on one host may share a store: a pid of another pid namespace names some other
// process here, or none, and says nothing about the consumer's: the lease decides.
TEST(ConsumerId, AProcessOfAnotherPidNamespaceIsTakenForAlive) {
  const std::string id = id_of_a_process_that_is_gone();
  ASSERT_FALSE(id.empty());
  EXPECT_TRUE(owner_alive(with_field(id, 2, "1"))) << with_field(id, 2, "1");
  // pid 1 here is this namespace's init, started at another time than the other one's
  EXPECT_TRUE(owner_alive(with_field(with_field(id, 0, "1"), 2, "1")));
}

TEST(ConsumerId, AnIdItCannotReadIsTakenForAlive) {
  for (const char* id : {"", "x", "12", "12.34", "-5.1.2.u", "abc.def.ghi"}) EXPECT_TRUE(owner_alive(id)) << id;
}

}  // namespace
