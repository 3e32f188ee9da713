#include "nats/server_info.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <string>

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

}  // namespace

nlohmann::json read_server_info(std::string_view url, std::chrono::milliseconds timeout) {
  const ServerAddress address = split_server_url(url);
  if (!address.problem.empty()) return nullptr;
  const std::string host(address.host), port(address.port.value_or("4222"));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return nullptr;
  Socket s;
  s.fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  const timeval tv{static_cast<time_t>(timeout.count() / 1000),
                   static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  // SO_SNDTIMEO bounds connect() too (Linux).
  const bool connected = s.fd >= 0 && ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
                         ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0 &&
                         ::connect(s.fd, found->ai_addr, found->ai_addrlen) == 0;
  ::freeaddrinfo(found);
  if (!connected) return nullptr;
  std::string line;
  char buf[4096];
  while (line.find("\r\n") == std::string::npos && line.size() < 64 * 1024) {
    const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n <= 0) return nullptr;
    line.append(buf, static_cast<std::size_t>(n));
  }
  if (!line.starts_with("INFO ")) return nullptr;
  auto info = nlohmann::json::parse(line.substr(5, line.find("\r\n") - 5), nullptr, false);
  return info.is_object() ? info : nullptr;
}

}  // namespace crier::nats
