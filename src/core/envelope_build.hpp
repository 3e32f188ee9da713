// The CloudEvents attributes of a published event, from what the bus knows of it.
#pragma once

#include <string_view>

#include "crier/detail/core.hpp"
#include "crier/envelope.hpp"

namespace crier::detail {

/// The CloudEvents source of this process's events when none is configured: /crier/HOST/PID.
std::string default_source();

/// Every attribute but the data: id, source, type, time, correlation and causation ids,
/// subject, dataschema, partition key and the publisher's extensions.
Envelope build_envelope(const PublishMeta& meta, std::string_view source, std::string_view type);

}  // namespace crier::detail

namespace crier::detail {

/// The inverse, for events a transport delivers: the publish attributes of a stored envelope,
/// which the meta keeps. Ids that are not UUIDs (foreign publishers) read as nil. `time` is
/// its time attribute, parsed already (the epoch for none).
PublishMeta meta_of_stored(std::shared_ptr<const Envelope> stored, Timestamp time);

}  // namespace crier::detail
