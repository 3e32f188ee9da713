// Events that could not be handled: kept with why, listed, sent again or purged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "crier/envelope.hpp"
#include "crier/event.hpp"
#include "crier/export.hpp"

namespace crier {

/// One dead-lettered event of one subscriber.
struct DeadLetter {
  std::uint64_t id = 0;       ///< unique within the bus; what redrive and purge take
  Envelope envelope{};        ///< the event; data encoded by its codec (empty if it has none)
  std::string subscriber{};   ///< whose handler failed
  int attempts = 0;           ///< attempts made
  std::string first_error{};  ///< the first failure's message
  std::string last_error{};   ///< the last failure's message
  Timestamp first_failure{};
  Timestamp last_failure{};
};

/// Selects dead letters. Empty fields match everything.
struct DeadLetterFilter {
  std::string subscriber{};
  std::string event_type{};
  std::vector<std::uint64_t> ids{};
};

/// Dead letters as a durable transport keeps them: what the bus's dead-letter calls and the
/// tools use. Ids are the transport's. Thread-safe.
class CRIER_EXPORT DeadLetterQueue {
 public:
  virtual ~DeadLetterQueue() = default;
  /// Matching letters, oldest first.
  virtual std::vector<DeadLetter> list(const DeadLetterFilter& filter) = 0;
  virtual std::size_t count(const DeadLetterFilter& filter) = 0;
  /// Sends matching letters back to their subscriber (any consumer of that name, in any
  /// process) with a fresh attempt count, and removes them. Returns how many.
  virtual std::size_t redrive(const DeadLetterFilter& filter) = 0;
  /// Deletes matching letters; returns how many.
  virtual std::size_t purge(const DeadLetterFilter& filter) = 0;
  /// Edit-and-redrive: sends letter `id` back to its subscriber alone, with its data replaced
  /// by `data` (id, type and the other attributes unchanged), with a fresh attempt count, and
  /// removes the letter. Should it fail again, the letter kept holds the edited data. Throws
  /// Error(Errc::invalid_argument) when there is no letter `id`. The default throws: the
  /// transport cannot send one subscriber an edited event.
  virtual void redrive_edited(std::uint64_t id, std::string data);
};

/// Published on the bus whenever an event is dead-lettered, so that an application can alert
/// on it. (Failures of this event's own subscribers are dead-lettered without a new one.)
struct DeadLettered {
  std::uint64_t dead_letter_id = 0;
  std::string subscriber{};
  std::string event_type{};
  std::string event_id{};
  int attempts = 0;
  std::string last_error{};
};
CRIER_EVENT(DeadLettered, "crier.deadlettered")
/// Its JSON form (the default codec), so that a durable bus stores it like any event.
CRIER_EXPORT void to_json(nlohmann::json& j, const DeadLettered& e);
CRIER_EXPORT void from_json(const nlohmann::json& j, DeadLettered& e);

}  // namespace crier
