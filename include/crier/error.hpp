// crier's one error idiom: every failure the library reports to its caller is a
// crier::Error carrying an Errc code and a message that names what failed and where
// (event type, subscriber, file). Handlers' own exceptions never reach publishers; they
// are reported through BusOptions::on_error instead.
#pragma once

#include <stdexcept>
#include <string>

#include "crier/export.hpp"

namespace crier {

/// What went wrong, for programs that branch on failures. Stable across versions.
enum class Errc {
  invalid_name,      ///< an event type, subscriber or attribute name is malformed
  invalid_argument,  ///< an option or argument is out of range
  bus_closed,        ///< publish or subscribe after drain() began
  queue_full,        ///< an async subscriber's queue stayed full past the deadline
  nesting_too_deep,  ///< publish nested inside handlers more than 32 deep (runaway recursion)
  would_deadlock,    ///< e.g. drain() called from a handler running on the bus's workers
  type_conflict,     ///< two different C++ types declared with one event type name
  invalid_envelope,  ///< a CloudEvents envelope is missing or has malformed attributes
  codec_error,       ///< an event could not be encoded or decoded
  transport_error,   ///< the transport could not store or read events (disk full, locked, down)
  store_error,       ///< a store file is not a crier store, is newer, or is corrupt
  not_found,         ///< what a tool opens does not exist (a NATS stream, a Redis bus): tools make none
};

/// Short, stable name of an error code ("invalid_name", ...).
CRIER_EXPORT const char* to_string(Errc code) noexcept;

/// The exception type of every error crier itself raises. what() reads
/// "crier: <code>: <message>".
class CRIER_EXPORT Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message);
  /// The machine-readable code.
  Errc code() const noexcept { return code_; }
  /// The message alone, without the "crier: <code>: " of what(): what to quote when this
  /// error becomes part of another message.
  std::string message() const;

 private:
  Errc code_;
};

}  // namespace crier
