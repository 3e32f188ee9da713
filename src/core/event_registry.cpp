// The process-wide map from event type names to dense indices.
#include <cxxabi.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/mutex.hpp"
#include "crier/codec.hpp"
#include "crier/error.hpp"
#include "crier/event.hpp"

namespace crier::detail {

namespace {
// The C++ name of a type, as written in source, from its typeid name.
std::string readable(const char* mangled) {
  int status = 0;
  char* name = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = status == 0 && name ? name : mangled;
  std::free(name);
  return out;
}
}  // namespace

void throw_no_codec(std::string_view type_name, const char* cpp_type_name) {
  const std::string cpp = readable(cpp_type_name);
  const std::size_t scope = cpp.rfind("::");
  const std::string bare = scope == std::string::npos ? cpp : cpp.substr(scope + 2);
  throw Error(Errc::codec_error,
              "event type " + cpp + " (\"" + std::string(type_name) +
                  "\") has no codec, and a durable bus stores every event as data: next to its CRIER_EVENT, add "
                  "NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(" +
                  bare +
                  ", member1, member2, ...) (or to_json and from_json functions) after #include "
                  "<crier/json.hpp>, or specialise crier::Codec<" +
                  cpp + ">");
}

std::uint32_t register_event_type(std::string_view type_name, const char* cpp_type_name) {
  struct Known {
    std::uint32_t index;
    std::string cpp_type;
  };
  static Mutex mu;
  static std::unordered_map<std::string, Known> known;
  MutexLock lock(mu);
  auto [it, inserted] =
      known.try_emplace(std::string(type_name), Known{static_cast<std::uint32_t>(known.size()), cpp_type_name});
  if (!inserted && it->second.cpp_type != cpp_type_name)
    throw Error(Errc::type_conflict, "event type name '" + std::string(type_name) + "' is declared by two C++ types (" +
                                         readable(it->second.cpp_type.c_str()) + " and " + readable(cpp_type_name) +
                                         ")");
  if (it->second.index >= 65536) throw Error(Errc::invalid_argument, "more than 65536 event types in one process");
  return it->second.index;
}

}  // namespace crier::detail
