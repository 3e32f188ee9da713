// The CloudEvents attributes of a published event, from what the bus knows of it.
#pragma once

#include <string_view>

#include "crier/detail/core.hpp"
#include "crier/envelope.hpp"

namespace crier::detail {

/// Every attribute but the data: id, source, type, time, correlation and causation ids,
/// subject, dataschema, partition key and the publisher's extensions.
Envelope build_envelope(const PublishMeta& meta, std::string_view source, std::string_view type);

}  // namespace crier::detail
