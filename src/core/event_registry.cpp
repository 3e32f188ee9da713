// The process-wide map from event type names to dense indices.
#include <mutex>
#include <string>
#include <unordered_map>

#include "crier/error.hpp"
#include "crier/event.hpp"

namespace crier::detail {

std::uint32_t register_event_type(std::string_view type_name, const char* cpp_type_name) {
  struct Known {
    std::uint32_t index;
    std::string cpp_type;
  };
  static std::mutex mu;
  static std::unordered_map<std::string, Known> known;
  std::lock_guard lock(mu);
  auto [it, inserted] = known.try_emplace(std::string(type_name), Known{static_cast<std::uint32_t>(known.size()), cpp_type_name});
  if (!inserted && it->second.cpp_type != cpp_type_name)
    throw Error(Errc::type_conflict, "event type name '" + std::string(type_name) + "' is declared by two C++ types (" +
                                         it->second.cpp_type + " and " + cpp_type_name + ")");
  if (it->second.index >= 65536) throw Error(Errc::invalid_argument, "more than 65536 event types in one process");
  return it->second.index;
}

}  // namespace crier::detail
