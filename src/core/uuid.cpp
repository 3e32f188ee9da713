// UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 42-bit per-thread counter seeded at
// random each millisecond (method 1, "fixed-length dedicated counter"), then 32 random bits.
// Ids from one thread strictly increase; ids from different threads differ in their random
// bits.
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "crier/envelope.hpp"
#include "crier/error.hpp"

namespace crier {

namespace {

struct IdState {
  std::uint64_t rng;
  std::uint64_t last_ms = 0;
  std::uint64_t counter = 0;

  IdState() {
    std::random_device rd;
    rng = (std::uint64_t{rd()} << 32) ^ rd() ^ std::hash<std::thread::id>{}(std::this_thread::get_id()) ^
          static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  std::uint64_t next() noexcept {  // splitmix64
    std::uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

constexpr std::uint64_t kCounterBits = 42;
constexpr std::uint64_t kCounterMax = (std::uint64_t{1} << kCounterBits) - 1;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Uuid Uuid::v7() noexcept {
  thread_local IdState state;
  auto ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  if (ms > state.last_ms) {
    state.last_ms = ms;
    state.counter = state.next() & (kCounterMax >> 1);  // headroom for increments
  } else if (state.counter < kCounterMax) {
    ++state.counter;
    ms = state.last_ms;
  } else {  // counter exhausted within one millisecond: borrow the next one
    ms = ++state.last_ms;
    state.counter = state.next() & (kCounterMax >> 1);
  }
  const std::uint64_t c = state.counter;
  const std::uint64_t tail = state.next();
  Uuid u;
  auto& b = u.bytes;
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<std::uint8_t>(0x70 | ((c >> 38) & 0x0f));
  b[7] = static_cast<std::uint8_t>(c >> 30);
  b[8] = static_cast<std::uint8_t>(0x80 | ((c >> 24) & 0x3f));
  b[9] = static_cast<std::uint8_t>(c >> 16);
  b[10] = static_cast<std::uint8_t>(c >> 8);
  b[11] = static_cast<std::uint8_t>(c);
  for (int i = 0; i < 4; ++i) b[12 + i] = static_cast<std::uint8_t>(tail >> (8 * i));
  return u;
}

bool Uuid::is_nil() const noexcept {
  for (auto x : bytes)
    if (x != 0) return false;
  return true;
}

std::uint64_t Uuid::unix_ms() const noexcept {
  std::uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | bytes[i];
  return ms;
}

std::string Uuid::to_string() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(36, '-');
  std::size_t at = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) ++at;  // the dash is already there
    s[at++] = digits[bytes[i] >> 4];
    s[at++] = digits[bytes[i] & 0x0f];
  }
  return s;
}

Uuid Uuid::parse(std::string_view text) {
  Uuid u;
  auto fail = [&] {
    return Error(Errc::invalid_argument, "not a UUID (want 8-4-4-4-12 hex digits): '" + std::string(text) + "'");
  };
  if (text.size() != 36) throw fail();
  int byte = 0;
  for (std::size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') throw fail();
      ++i;
      continue;
    }
    const int hi = hex_value(text[i]), lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) throw fail();
    u.bytes[byte++] = static_cast<std::uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return u;
}

}  // namespace crier
