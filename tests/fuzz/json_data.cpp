// The JSON parser of event data (what every decoded event passes through), fed anything,
// against nlohmann::json::parse, which it stands in for: both refuse, or both read the same
// value, type for type.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "../json_same.hpp"
#include "core/json_parse.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  std::optional<nlohmann::json> theirs, ours;
  try {
    theirs = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
  }
  try {
    ours = crier::detail::parse_json(text);
  } catch (const std::invalid_argument&) {
  }
  if (theirs.has_value() != ours.has_value()) std::abort();
  if (theirs && !test::same_json(*theirs, *ours)) std::abort();
  return 0;
}
