// The UUID parser, fed anything: it refuses with crier::Error, or accepts a UUID whose
// canonical form parses back to it.
#include <crier/envelope.hpp>
#include <crier/error.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  crier::Uuid u;
  try {
    u = crier::Uuid::parse(text);
  } catch (const crier::Error&) {
    return 0;
  }
  const std::string canonical = u.to_string();
  if (canonical.size() != 36 || crier::Uuid::parse(canonical) != u) std::abort();
  return 0;
}
