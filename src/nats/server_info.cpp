#include "nats/server_info.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "nats/names.hpp"

namespace crier::nats {

namespace {

// A socket closed when it goes.
struct Socket {
  int fd = -1;
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

// The lines the server at `url` sends a client that says nothing, up to `lines` of them, or
// fewer when it closes or `timeout` passes between two reads; empty when none can be read.
std::vector<std::string> greeting(std::string_view url, std::chrono::milliseconds timeout, std::size_t lines) {
  const ServerAddress address = split_server_url(url);
  if (!address.problem.empty()) return {};
  const std::string host(address.host), port(address.port.value_or("4222"));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return {};
  Socket s;
  s.fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  const timeval tv{static_cast<time_t>(timeout.count() / 1000),
                   static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  // SO_SNDTIMEO bounds connect() too (Linux).
  const bool connected = s.fd >= 0 && ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
                         ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0 &&
                         ::connect(s.fd, found->ai_addr, found->ai_addrlen) == 0;
  ::freeaddrinfo(found);
  if (!connected) return {};
  std::vector<std::string> out;
  std::string text;
  char buf[4096];
  while (out.size() < lines && text.size() < 64 * 1024) {
    if (const auto end = text.find("\r\n"); end != std::string::npos) {
      out.push_back(text.substr(0, end));
      text.erase(0, end + 2);
      continue;
    }
    const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace

nlohmann::json read_server_info(std::string_view url, std::chrono::milliseconds timeout) {
  const auto lines = greeting(url, timeout, 1);
  if (lines.empty() || !lines[0].starts_with("INFO ")) return nullptr;
  auto info = nlohmann::json::parse(lines[0].substr(5), nullptr, false);
  return info.is_object() ? info : nullptr;
}

std::string read_server_refusal(std::string_view url, std::chrono::milliseconds timeout) {
  const auto lines = greeting(url, timeout, 2);
  if (lines.size() < 2 || !lines[0].starts_with("INFO ") || !lines[1].starts_with("-ERR ")) return {};
  std::string_view why = std::string_view(lines[1]).substr(5);
  if (why.size() >= 2 && why.front() == '\'' && why.back() == '\'') why = why.substr(1, why.size() - 2);
  return std::string(why);
}

}  // namespace crier::nats
