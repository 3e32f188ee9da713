#include "crc32c.hpp"

#include <array>
#include <cstring>

namespace crier::sqlite {

namespace {

const std::array<std::uint32_t, 256>& crc_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// Both take and return the register value (the CRC inverted).
std::uint32_t extend_table(std::uint32_t c, std::string_view bytes) noexcept {
  const auto& t = crc_table();
  for (unsigned char b : bytes) c = t[(c ^ b) & 0xff] ^ (c >> 8);
  return c;
}

// The same with SSE 4.2's crc32 instruction, eight bytes at a time.
[[gnu::target("sse4.2")]] std::uint32_t extend_sse42(std::uint32_t c, std::string_view bytes) noexcept {
  std::uint64_t wide = c;
  const char* p = bytes.data();
  std::size_t n = bytes.size();
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    wide = __builtin_ia32_crc32di(wide, v);
  }
  c = static_cast<std::uint32_t>(wide);
  for (; n > 0; --n, ++p) c = __builtin_ia32_crc32qi(c, static_cast<unsigned char>(*p));
  return c;
}

}  // namespace

std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc) noexcept {
  static const bool hardware = __builtin_cpu_supports("sse4.2");
  const std::uint32_t reg = ~crc;
  return ~(hardware ? extend_sse42(reg, bytes) : extend_table(reg, bytes));
}

}  // namespace crier::sqlite
