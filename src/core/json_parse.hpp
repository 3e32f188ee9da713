// JSON text to nlohmann::json, for the data of every event a subscriber decodes.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "crier/export.hpp"

namespace crier::detail {

/// Parses `text` (RFC 8259 JSON, after an optional UTF-8 byte order mark) into the value that
/// nlohmann::json::parse gives for it: the same types (a non-negative integer unsigned, a
/// negative one signed, one out of their range a double), a repeated key's last value, any
/// depth, and a NUL byte after the value ending the text. Throws std::invalid_argument
/// saying what is wrong and at which byte where nlohmann::json::parse throws.
///
/// Why not nlohmann::json::parse: its lexer keeps every character it reads for its error
/// messages, in buffers it grows anew for each text: a dozen allocations for a 100-byte
/// event, on the path of every delivered event. Exported for crier's other libraries (the
/// NATS transport reads each publish's acknowledgement with it), not part of the API.
CRIER_EXPORT nlohmann::json parse_json(std::string_view text);

}  // namespace crier::detail
