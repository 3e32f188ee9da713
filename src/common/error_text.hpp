// The text of a caught exception, to quote inside another message.
#pragma once

#include <exception>
#include <string>

#include <crier/error.hpp>

namespace crier::detail {

/// crier's own errors without their "crier: <code>: " (the message quoting them says what
/// failed), anything else as its what() says.
inline std::string message_of(const std::exception& e) {
  if (const auto* error = dynamic_cast<const Error*>(&e)) return error->message();
  return e.what();
}

}  // namespace crier::detail
