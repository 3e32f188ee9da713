// A subscriber's consumer on JetStream: a durable pull consumer per (subscriber, event type)
// that crier creates and never deletes, read through pull requests of its own.
#pragma once

#include <memory>

#include <crier/transport.hpp>

#include "nats/context.hpp"

namespace crier::nats {

/// The consumer of `spec`: creates its durable consumers if missing (where it starts applies
/// only then). Throws Error(Errc::invalid_argument) for a start position that is not a
/// stream sequence.
std::unique_ptr<Consumer> make_consumer(std::shared_ptr<const Context> ctx, const ConsumerSpec& spec);

/// Creates the durable consumer `durable` of the bus's stream as crier configures one, reading
/// `filter` from `start`; returns the server's info of it. Throws ApiError.
nlohmann::json create_consumer(const Context& ctx, const std::string& durable, const std::string& filter,
                               const StartFrom& start);

}  // namespace crier::nats
