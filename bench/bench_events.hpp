#pragma once

#include <cstdint>

#include <crier/crier.hpp>
#include <crier/json.hpp>

namespace bench {

struct Tick {
  std::int64_t value = 1;
};
CRIER_EVENT(Tick, "com.example.bench.tick");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Tick, value)

}  // namespace bench
