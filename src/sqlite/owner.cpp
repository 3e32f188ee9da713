#include "owner.hpp"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>

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

}  // namespace

std::string new_owner_id() {
  const long pid = static_cast<long>(::getpid());
  return std::to_string(pid) + "." + start_time(pid) + "." + Uuid::v7().to_string();
}

bool owner_alive(std::string_view owner) {
  const auto dot = owner.find('.');
  const auto dot2 = owner.find('.', dot + 1);
  if (dot == std::string_view::npos || dot2 == std::string_view::npos) return true;
  long pid = 0;
  if (std::from_chars(owner.data(), owner.data() + dot, pid).ec != std::errc() || pid <= 0) return true;
  const std::string started = start_time(pid);
  return !started.empty() && started == owner.substr(dot + 1, dot2 - dot - 1);
}

}  // namespace crier::sqlite
