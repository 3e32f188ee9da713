// Whether two JSON values are the same, type for type (nlohmann's == takes 1, 1u and 1.0 for
// one another): what crier's parser of event data must give where nlohmann::json::parse does.
#pragma once

#include <cstring>

#include <nlohmann/json.hpp>

namespace test {

inline bool same_json(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case nlohmann::json::value_t::array:
    case nlohmann::json::value_t::object: {
      if (a.size() != b.size()) return false;
      for (auto x = a.begin(), y = b.begin(); x != a.end(); ++x, ++y) {
        if (a.is_object() && x.key() != y.key()) return false;
        if (!same_json(*x, *y)) return false;
      }
      return true;
    }
    case nlohmann::json::value_t::number_float: {  // bit for bit: -0.0 is not 0.0
      const double x = a.get<double>(), y = b.get<double>();
      return std::memcmp(&x, &y, sizeof x) == 0;
    }
    default:
      return a == b;
  }
}

}  // namespace test
