#include "cli.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <iostream>

namespace crier::cli {

std::shared_ptr<Transport> open_bus(const std::string& target, bool read_only) {
  if (target.find("://") == std::string::npos) {
    std::error_code ec;
    if (!std::filesystem::exists(target, ec)) throw Failure(not_found, target + ": no such store file");
  }
  OpenOptions how;
  how.read_only = read_only;
  return open_transport(target, how);
}

bool is_terminal(int fd) { return ::isatty(fd) == 1; }

int terminal_width() {
  winsize w{};
  if (!is_terminal(1)) return 0;
  return ::ioctl(1, TIOCGWINSZ, &w) == 0 && w.ws_col > 20 ? w.ws_col : 80;
}

bool confirm(const std::string& question) {
  if (!is_terminal(0)) return false;
  std::fprintf(stderr, "%s [y/N] ", question.c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes";
}

Timestamp parse_when(const std::string& text) {
  if (text.size() >= 3 && text[0] == '-' && std::isdigit(static_cast<unsigned char>(text[1]))) {
    std::size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(text.substr(1), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    const std::string unit = text.substr(1 + used);
    const auto now = std::chrono::system_clock::now();
    if (unit == "s") return now - std::chrono::seconds(n);
    if (unit == "m") return now - std::chrono::minutes(n);
    if (unit == "h") return now - std::chrono::hours(n);
    if (unit == "d") return now - std::chrono::hours(24 * n);
  }
  try {
    return parse_time(text);
  } catch (const Error&) {
    throw Failure(usage, "'" + text + "' is not a time: give RFC 3339 (2026-12-03T10:00:00Z) or -30s, -10m, -2h, -1d");
  }
}

std::string age_text(std::chrono::milliseconds age) {
  const auto ms = age.count();
  char buf[32];
  if (ms < 1000)
    std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(ms));
  else if (ms < 120'000)
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
  else if (ms < 7'200'000)
    std::snprintf(buf, sizeof buf, "%lld min", static_cast<long long>(ms / 60'000));
  else if (ms < 172'800'000)
    std::snprintf(buf, sizeof buf, "%lld h", static_cast<long long>(ms / 3'600'000));
  else
    std::snprintf(buf, sizeof buf, "%lld d", static_cast<long long>(ms / 86'400'000));
  return buf;
}

}  // namespace crier::cli
