// How an event becomes envelope data and back.
//
// The default codec is JSON through nlohmann-json: a type with `to_json`/`from_json` found by
// argument-dependent lookup (or NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE) needs nothing more.
// A type brings its own codec by specialising crier::Codec:
//
//   template <> struct crier::Codec<Blob> {
//     static constexpr std::string_view content_type = "application/octet-stream";
//     static std::string encode(const Blob&);
//     static Blob decode(std::string_view);
//   };
//
// In-process delivery never calls a codec.
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "crier/error.hpp"
#include "crier/export.hpp"

namespace crier {

/// The codec of event type E; the primary template is the JSON codec.
template <class E>
struct Codec {
  static constexpr std::string_view content_type = "application/json";
  /// False when E has neither to_json/from_json nor a Codec of its own: envelopes of it then
  /// carry no data. (Specialisations need not declare it.)
  static constexpr bool available = std::is_constructible_v<nlohmann::json, const E&>;
  /// False when E cannot be read back from JSON (it has no from_json).
  static constexpr bool decodable = requires(const nlohmann::json& j, E& e) { nlohmann::from_json(j, e); };

  static std::string encode(const E& event) {
    if constexpr (available) {
      try {
        return nlohmann::json(event).dump();
      } catch (const std::exception& e) {
        throw Error(Errc::codec_error, std::string("JSON encoding failed: ") + e.what());
      }
    } else {
      throw Error(Errc::codec_error,
                  "no codec: give the event type to_json/from_json or specialise crier::Codec");
    }
  }

  static E decode(std::string_view data) {
    if constexpr (decodable) {
      try {
        return nlohmann::json::parse(data).template get<E>();
      } catch (const std::exception& e) {
        throw Error(Errc::codec_error, std::string("JSON decoding failed: ") + e.what());
      }
    } else {
      throw Error(Errc::codec_error,
                  "no codec: give the event type to_json/from_json or specialise crier::Codec");
    }
  }
};

namespace detail {
template <class E>
constexpr bool codec_available() {
  if constexpr (requires { Codec<E>::available; })
    return Codec<E>::available;
  else
    return true;  // a specialisation brought its own
}

/// True when E's codec both encodes and decodes: what a durable subscriber needs.
template <class E>
constexpr bool codec_round_trips() {
  if constexpr (requires { Codec<E>::decodable; })
    return codec_available<E>() && Codec<E>::decodable;
  else
    return codec_available<E>();
}

/// Throws Error(Errc::codec_error) saying that the C++ type (by its typeid name) declared as
/// `type_name` has no codec, which a durable bus needs, and what to add.
[[noreturn]] CRIER_EXPORT void throw_no_codec(std::string_view type_name, const char* cpp_type_name);
}  // namespace detail

}  // namespace crier
