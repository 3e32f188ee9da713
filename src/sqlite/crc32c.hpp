// CRC-32C (Castagnoli): the checksum of journal records and of stored events.
#pragma once

#include <cstdint>
#include <string_view>

namespace crier::sqlite {

/// The CRC-32C of `bytes` appended to a stream whose CRC so far is `crc` (0 for none):
/// crc32c(b, crc32c(a)) == crc32c(a + b). Uses SSE 4.2 when the processor has it.
std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0) noexcept;

}  // namespace crier::sqlite
