#include "crier/error.hpp"

#include <cstring>

namespace crier {

const char* to_string(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_name:
      return "invalid_name";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::bus_closed:
      return "bus_closed";
    case Errc::queue_full:
      return "queue_full";
    case Errc::nesting_too_deep:
      return "nesting_too_deep";
    case Errc::would_deadlock:
      return "would_deadlock";
    case Errc::type_conflict:
      return "type_conflict";
    case Errc::invalid_envelope:
      return "invalid_envelope";
    case Errc::codec_error:
      return "codec_error";
    case Errc::transport_error:
      return "transport_error";
    case Errc::store_error:
      return "store_error";
    case Errc::not_found:
      return "not_found";
  }
  return "unknown";
}

Error::Error(Errc code, const std::string& message)
    : std::runtime_error(std::string("crier: ") + to_string(code) + ": " + message), code_(code) {}

std::string Error::message() const {
  // what() is "crier: <code>: <message>"; the message is what follows.
  return what() + std::strlen("crier: ") + std::strlen(to_string(code_)) + std::strlen(": ");
}

}  // namespace crier
