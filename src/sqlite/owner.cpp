#include "owner.hpp"

#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "crier/envelope.hpp"

namespace crier::sqlite {

namespace {

// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. "" when
// there is no such process, or only its corpse (a zombie that was killed but not yet reaped).
std::string start_time(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  const auto paren = line.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return {};
  std::istringstream fields(line.substr(paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i)
    if (i == 3 && (field == "Z" || field == "X")) return {};
  return field;
}

// The pid namespace this process sees pids in ("4026531836"; "" when it cannot be read).
const std::string& pid_namespace() {
  static const std::string ns = [] {
    std::error_code ec;
    const std::string link = std::filesystem::read_symlink("/proc/self/ns/pid", ec).string();  // "pid:[N]"
    const auto open = link.find('[');
    const auto close = link.find(']');
    return ec || open == std::string::npos || close == std::string::npos ? std::string()
                                                                         : link.substr(open + 1, close - open - 1);
  }();
  return ns;
}

}  // namespace

std::string new_owner_id() {
  const long pid = static_cast<long>(::getpid());
  return std::to_string(pid) + "." + start_time(pid) + "." + pid_namespace() + "." + Uuid::v7().to_string();
}

bool owner_alive(std::string_view owner) {
  std::vector<std::string_view> fields;
  for (std::size_t at = 0;;) {
    const auto dot = owner.find('.', at);
    fields.push_back(owner.substr(at, dot == std::string_view::npos ? dot : dot - at));
    if (dot == std::string_view::npos) break;
    at = dot + 1;
  }
  // "<pid>.<start>.<uuid>" (crier before 2026-12-07) or "<pid>.<start>.<pid namespace>.<uuid>".
  // A pid of another pid namespace (another container on this host, sharing the store) means
  // nothing here: its lease decides.
  if (fields.size() < 3 || (fields.size() >= 4 && fields[2] != pid_namespace())) return true;
  long pid = 0;
  if (std::from_chars(fields[0].data(), fields[0].data() + fields[0].size(), pid).ec != std::errc() || pid <= 0)
    return true;
  const std::string started = start_time(pid);
  return !started.empty() && started == fields[1];
}

}  // namespace crier::sqlite
