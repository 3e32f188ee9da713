// How an event becomes envelope data and back.
//
// The default codec is JSON through nlohmann-json: a type with `to_json`/`from_json` found by
// argument-dependent lookup (or NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE, after including
// <crier/json.hpp>) needs nothing more.
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

#include <nlohmann/json_fwd.hpp>

#include "crier/error.hpp"
#include "crier/export.hpp"

namespace crier {

namespace detail {

// The JSON codec sees nlohmann::json only as a declared type: the parsing and printing live
// in the library, so that a program using only the in-process bus never compiles
// nlohmann/json.hpp. A type's to_json/from_json are declared beside the type (by
// NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE or by hand, after including crier/json.hpp), so every
// translation unit that sees the type sees the same answer here.
template <class E>
concept JsonWritable = requires(nlohmann::json& j, const E& e) {
  to_json(j, e);
};
template <class E>
concept JsonReadable = std::is_default_constructible_v<E> && requires(const nlohmann::json& j, E& e) {
  from_json(j, e);
};

/// Builds a JSON value with `write(json, event)` and prints it. Throws Error(Errc::codec_error).
CRIER_EXPORT std::string json_encode(void (*write)(nlohmann::json&, const void*), const void* event);
/// Parses `data` and fills `event` with `read(json, event)`. Throws Error(Errc::codec_error).
CRIER_EXPORT void json_decode(std::string_view data, void (*read)(const nlohmann::json&, void*), void* event);
/// Throws Error(Errc::codec_error): the type has neither to_json/from_json nor a Codec.
[[noreturn]] CRIER_EXPORT void throw_no_json_codec(bool decoding);

}  // namespace detail

/// The codec of event type E; the primary template is the JSON codec, for types with
/// to_json/from_json found by argument-dependent lookup.
template <class E>
struct Codec {
  static constexpr std::string_view content_type = "application/json";
  /// False when E has neither to_json/from_json nor a Codec of its own: envelopes of it then
  /// carry no data. (Specialisations need not declare it.)
  static constexpr bool available = detail::JsonWritable<E>;
  /// False when E cannot be read back from JSON (no from_json, or not default-constructible).
  static constexpr bool decodable = detail::JsonReadable<E>;

  static std::string encode(const E& event) {
    if constexpr (available) {
      return detail::json_encode([](nlohmann::json& j, const void* e) { to_json(j, *static_cast<const E*>(e)); },
                                 &event);
    } else {
      detail::throw_no_json_codec(false);
    }
  }
  static E decode(std::string_view data) {
    if constexpr (decodable) {
      E event{};
      detail::json_decode(
          data, [](const nlohmann::json& j, void* e) { from_json(j, *static_cast<E*>(e)); }, &event);
      return event;
    } else {
      detail::throw_no_json_codec(true);
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
