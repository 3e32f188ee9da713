// One subscriber's consumer of one event type: a consumer of the subscriber's group on the
// type's stream and on its redrive stream.
#pragma once

#include <memory>

#include <crier/transport.hpp>

#include "redis/context.hpp"

namespace crier::redis {

/// Makes the groups when they do not exist (at spec.start), and the consumer.
std::unique_ptr<Consumer> make_consumer(std::shared_ptr<const Context> ctx, const ConsumerSpec& spec);

/// The id a group of stream `key` made at `start` has as its last delivered entry ("0",
/// "$", an id). A time is looked up in the stream: the entries of its millisecond are told
/// apart by their time attribute.
std::string group_start(Connection& conn, const std::string& key, const StartFrom& start);

/// The letter's stream fields: the event's, then crier_subscriber, crier_attempts, ... as
/// the dead-letter queue reads them back.
Fields letter_fields(const DeadLetter& letter, std::string_view stream_key, std::string_view entry_id);

}  // namespace crier::redis
