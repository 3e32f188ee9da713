// The JSON codec's out-of-line half: the only place the core library parses and prints JSON
// for event data, so that codec.hpp needs no more than nlohmann/json_fwd.hpp.
#include <exception>
#include <string>

#include <nlohmann/json.hpp>

#include "crier/codec.hpp"
#include "crier/dead_letter.hpp"
#include "crier/error.hpp"
#include "crier/metrics.hpp"
#include "json_parse.hpp"

namespace crier {

namespace detail {

std::string json_encode(void (*write)(nlohmann::json&, const void*), const void* event) {
  try {
    nlohmann::json j;
    write(j, event);
    return j.dump();
  } catch (const std::exception& e) {
    throw Error(Errc::codec_error, std::string("JSON encoding failed: ") + e.what());
  }
}

void json_decode(std::string_view data, void (*read)(const nlohmann::json&, void*), void* event) {
  try {
    read(parse_json(data), event);
  } catch (const std::exception& e) {
    throw Error(Errc::codec_error, std::string("JSON decoding failed: ") + e.what());
  }
}

void throw_no_json_codec(bool decoding) {
  throw Error(Errc::codec_error, decoding
                                     ? "no codec: the event type has no from_json (or is not default-constructible) "
                                       "and no crier::Codec specialisation"
                                     : "no codec: give the event type to_json/from_json (include <crier/json.hpp>) "
                                       "or specialise crier::Codec");
}

}  // namespace detail

void to_json(nlohmann::json& j, const DeadLettered& e) {
  j = nlohmann::json{{"dead_letter_id", e.dead_letter_id},
                     {"subscriber", e.subscriber},
                     {"event_type", e.event_type},
                     {"event_id", e.event_id},
                     {"attempts", e.attempts},
                     {"last_error", e.last_error}};
}

void from_json(const nlohmann::json& j, DeadLettered& e) {
  j.at("dead_letter_id").get_to(e.dead_letter_id);
  j.at("subscriber").get_to(e.subscriber);
  j.at("event_type").get_to(e.event_type);
  j.at("event_id").get_to(e.event_id);
  j.at("attempts").get_to(e.attempts);
  j.at("last_error").get_to(e.last_error);
}

void to_json(nlohmann::json& j, const BreakerChanged& e) {
  j = nlohmann::json{{"subscriber", e.subscriber},
                     {"event_type", e.event_type},
                     {"state", to_string(e.state)},
                     {"reason", e.reason},
                     {"cooldown_ms", e.cooldown.count()}};
}

void from_json(const nlohmann::json& j, BreakerChanged& e) {
  j.at("subscriber").get_to(e.subscriber);
  j.at("event_type").get_to(e.event_type);
  const auto state = j.at("state").get<std::string>();
  if (state == "open")
    e.state = BreakerState::open;
  else if (state == "closed")
    e.state = BreakerState::closed;
  else if (state == "half_open")
    e.state = BreakerState::half_open;
  else
    throw nlohmann::json::other_error::create(501, "unknown breaker state \"" + state + "\"", &j);
  j.at("reason").get_to(e.reason);
  // Checked: get<int64_t> of a float out of range (1e300) would be undefined behaviour.
  const auto& cooldown = j.at("cooldown_ms");
  if (!cooldown.is_number_integer())
    throw nlohmann::json::type_error::create(302, "cooldown_ms is not an integer number of milliseconds", &j);
  e.cooldown = std::chrono::milliseconds(cooldown.get<std::int64_t>());
}

}  // namespace crier
