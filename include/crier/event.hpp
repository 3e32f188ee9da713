// Declaring an event type.
//
// An event is a plain C++ value type with a stable CloudEvents type name, declared in one
// line next to the type, in the type's own namespace:
//
//   struct OrderPlaced { std::string order_id; int quantity; };
//   CRIER_EVENT(OrderPlaced, "com.example.order.placed");
//
// The name is checked at compile time: it must be reverse-DNS, at least two dot-separated
// segments of [A-Za-z0-9_-], starting with a letter, at most 255 characters. Publishing or
// subscribing to a type without a name is a compile-time error that says how to declare one.
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>

#include "crier/export.hpp"

namespace crier {

namespace detail {

constexpr bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_alnum(char c) noexcept { return is_alpha(c) || (c >= '0' && c <= '9'); }
constexpr bool is_name_char(char c) noexcept { return is_alnum(c) || c == '_' || c == '-'; }

}  // namespace detail

/// Longest accepted event type name.
inline constexpr std::size_t kMaxEventTypeLength = 255;
/// Longest accepted subscriber name.
inline constexpr std::size_t kMaxSubscriberNameLength = 128;

/// True when `name` is a valid event type name: reverse-DNS segments of [A-Za-z0-9_-]
/// separated by single dots, at least two segments, first character a letter.
constexpr bool is_valid_event_type(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxEventTypeLength || !detail::is_alpha(name.front())) return false;
  std::size_t segments = 1;
  bool segment_empty = false;
  for (char c : name) {
    if (c == '.') {
      if (segment_empty) return false;
      ++segments;
      segment_empty = true;
    } else if (detail::is_name_char(c)) {
      segment_empty = false;
    } else {
      return false;
    }
  }
  return !segment_empty && segments >= 2;
}

/// True when `name` is a valid subscriber name: 1 to 128 characters of [A-Za-z0-9_-],
/// starting with a letter or digit. No dots, so that the name can also be a NATS durable
/// consumer name or a Redis consumer group.
constexpr bool is_valid_subscriber_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxSubscriberNameLength || !detail::is_alnum(name.front())) return false;
  for (char c : name)
    if (!detail::is_name_char(c)) return false;
  return true;
}

namespace detail {
/// The rules of is_valid_subscriber_name and is_valid_event_type, as error messages say them.
inline constexpr std::string_view kSubscriberNameRule =
    "1-128 characters of [A-Za-z0-9_-], starting with a letter or digit";
inline constexpr std::string_view kEventTypeRule =
    "two or more dot-separated segments of [A-Za-z0-9_-], starting with a letter, at most 255 characters";

/// A name for an error message: quoted, and cut after `shown` characters (with its length),
/// so an over-long name does not flood the message.
inline std::string quoted_name(std::string_view name, std::size_t shown = 40) {
  std::string out(1, '\'');
  out.append(name.substr(0, shown));
  if (name.size() <= shown) return out.append(1, '\'');
  return out.append("...' (").append(std::to_string(name.size())).append(" characters)");
}
}  // namespace detail

/// Satisfied by a type declared with CRIER_EVENT.
template <class E>
concept Event = std::is_object_v<E> && !std::is_const_v<E> && !std::is_volatile_v<E> && requires {
  { crier_event_type(static_cast<const E*>(nullptr)) } -> std::convertible_to<std::string_view>;
};

/// The CloudEvents type name of an event type.
template <Event E>
inline constexpr std::string_view event_type_v = crier_event_type(static_cast<const E*>(nullptr));

namespace detail {
/// The bus-independent dense index of an event type, assigned on first use. The index is
/// keyed by the type name, so the same type seen from two shared libraries gets one index;
/// two different C++ types with one name raise Errc::type_conflict.
CRIER_EXPORT std::uint32_t register_event_type(std::string_view type_name, const char* cpp_type_name);

inline constexpr std::uint32_t kNoIndex = 0xffffffffu;

// Constant-initialised, so reading it needs no initialisation guard: one relaxed load.
template <class E>
inline std::atomic<std::uint32_t> cached_event_index{kNoIndex};

template <Event E>
[[gnu::noinline]] std::uint32_t first_event_index() {
  const std::uint32_t index = register_event_type(event_type_v<E>, typeid(E).name());
  cached_event_index<E>.store(index, std::memory_order_relaxed);
  return index;
}

template <Event E>
inline std::uint32_t event_index() {
  const std::uint32_t index = cached_event_index<E>.load(std::memory_order_relaxed);
  return index != kNoIndex ? index : first_event_index<E>();
}
}  // namespace detail

}  // namespace crier

/// Declares the CloudEvents type name of `Type`. Use at namespace scope in the namespace of
/// `Type` (the name is found by argument-dependent lookup). An invalid name fails to compile.
#define CRIER_EVENT(Type, Name)                                                                   \
  static_assert(::crier::is_valid_event_type(Name),                                               \
                "crier: invalid event type name for " #Type ": \"" Name                           \
                "\" (use reverse-DNS segments of [A-Za-z0-9_-], e.g. com.example.order.placed)"); \
  [[maybe_unused]] constexpr ::std::string_view crier_event_type(const Type*) noexcept { return Name; }
