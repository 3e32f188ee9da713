// The RFC 3339 time parser, fed anything: it refuses with crier::Error, or accepts a time
// that is formatted and parsed back to the same instant (to the microsecond formatted).
#include <crier/envelope.hpp>
#include <crier/error.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  crier::Timestamp t;
  try {
    t = crier::parse_time(text);
  } catch (const crier::Error&) {
    return 0;
  }
  const auto micros = std::chrono::floor<std::chrono::microseconds>(t);
  if (crier::parse_time(crier::format_time(t)) != micros) std::abort();
  return 0;
}
