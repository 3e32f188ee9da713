#include "json_parse.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <locale.h>
#include <stdlib.h>

#include "common/utf8.hpp"

namespace crier::detail {

namespace {

using json = nlohmann::json;

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// strtod reads the decimal point of the process's locale: numbers are read in "C"'s.
locale_t c_locale() {
  static const locale_t c = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr));
  return c;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  json parse() {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") i_ = 3;  // a byte order mark, as nlohmann skips it
    json root;
    // The arrays and objects open around the value being read, innermost last: iterative, so
    // that no depth of nesting can exhaust the stack.
    std::vector<json*> open;
    json* slot = &root;  // where the next value goes
    for (;;) {
      if (read_value(*slot)) {  // an array or an object was opened
        open.push_back(slot);
        if (first_element(*open.back(), slot)) continue;
        open.pop_back();  // it was empty: closed already
      }
      // A value is complete: the next element of what is open, or its end.
      for (;;) {
        if (open.empty()) {
          skip_space();
          // A NUL byte ends the text, as in nlohmann's lexer: data a C program sent with its
          // string's terminator still reads.
          if (i_ != s_.size() && s_[i_] != '\0') fail("unexpected text after the JSON value");
          return root;
        }
        json& container = *open.back();
        skip_space();
        const char end = container.is_object() ? '}' : ']';
        if (peek() == ',') {
          ++i_;
          slot = next_slot(container);
          break;
        }
        if (peek() != end)
          fail(container.is_object() ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array");
        ++i_;
        open.pop_back();
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::invalid_argument(what + " at byte " + std::to_string(i_));
  }

  char peek() const noexcept { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool at_end() const noexcept { return i_ >= s_.size(); }

  void skip_space() noexcept {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  // Reads a value into `out`; true when it is an array or an object, opened and not read yet.
  bool read_value(json& out) {
    skip_space();
    if (at_end()) fail("expected a value, found the end of the text");
    switch (s_[i_]) {
      case '{':
        ++i_;
        out = json::object();
        return true;
      case '[':
        ++i_;
        out = json::array();
        return true;
      case '"':
        out = read_string();
        return false;
      case 't':
        literal("true");
        out = true;
        return false;
      case 'f':
        literal("false");
        out = false;
        return false;
      case 'n':
        literal("null");
        out = nullptr;
        return false;
      default:
        if (s_[i_] == '-' || is_digit(s_[i_])) {
          read_number(out);
          return false;
        }
        fail("expected a value");
    }
  }

  // After '[' or '{': the slot of the first element, or false when the container is empty
  // (its end read).
  bool first_element(json& container, json*& slot) {
    skip_space();
    if (peek() == (container.is_object() ? '}' : ']')) {
      ++i_;
      return false;
    }
    slot = next_slot(container);
    return true;
  }

  // The slot of the next element: in an object after its key and ':'.
  json* next_slot(json& container) {
    if (container.is_array()) {
      auto& elements = container.get_ref<json::array_t&>();
      elements.emplace_back();
      return &elements.back();
    }
    skip_space();
    if (peek() != '"') fail("expected a member name in quotes");
    std::string key = read_string();
    skip_space();
    if (peek() != ':') fail("expected ':' after a member name");
    ++i_;
    // A repeated name: its last value, as nlohmann keeps it.
    return &container.get_ref<json::object_t&>()[std::move(key)];
  }

  void literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) fail("invalid literal");
    i_ += word.size();
  }

  std::string read_string() {
    ++i_;  // the opening quote
    const std::size_t start = i_;
    // The common case: no escapes, printable ASCII; taken in one piece.
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        std::string out(s_.substr(start, i_ - start));
        ++i_;
        return out;
      }
      if (c == '\\' || c < 0x20 || c >= 0x80) break;
      ++i_;
    }
    std::string out(s_.substr(start, i_ - start));
    for (;;) {
      if (at_end()) fail("a string is not closed");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("a control character in a string must be escaped");
      if (c >= 0x80) {
        const std::size_t bad = invalid_utf8_at(utf8_sequence());
        if (bad != std::string_view::npos) {
          i_ += bad;
          fail("a string is not UTF-8");
        }
        const std::size_t length = utf8_sequence().size();
        out.append(s_.substr(i_, length));
        i_ += length;
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++i_;
        continue;
      }
      ++i_;
      if (at_end()) fail("a string is not closed");
      switch (s_[i_++]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u':
          append_utf8(out, read_escaped_code_point());
          break;
        default:
          --i_;
          fail("invalid escape in a string");
      }
    }
  }

  // The bytes from i_ that one UTF-8 sequence starting there should span (at most what is
  // left): checked whole by invalid_utf8_at.
  std::string_view utf8_sequence() const noexcept {
    const auto c = static_cast<unsigned char>(s_[i_]);
    const std::size_t length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    return s_.substr(i_, length);
  }

  // After "\u": a code point, a surrogate pair taken together.
  std::uint32_t read_escaped_code_point() {
    const std::uint32_t first = read_hex4();
    if (first >= 0xDC00 && first <= 0xDFFF) fail("a low surrogate \\u escape without a high one before it");
    if (first < 0xD800 || first > 0xDBFF) return first;
    if (s_.substr(i_, 2) != "\\u") fail("a high surrogate \\u escape must be followed by a low one");
    i_ += 2;
    const std::uint32_t second = read_hex4();
    if (second < 0xDC00 || second > 0xDFFF) fail("a high surrogate \\u escape must be followed by a low one");
    return 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
  }

  std::uint32_t read_hex4() {
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const int h = i_ < s_.size() ? hex_value(s_[i_]) : -1;
      if (h < 0) fail("a \\u escape needs four hexadecimal digits");
      v = v * 16 + static_cast<std::uint32_t>(h);
      ++i_;
    }
    return v;
  }

  // -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  void read_number(json& out) {
    const std::size_t start = i_;
    const bool negative = peek() == '-';
    if (negative) ++i_;
    if (peek() == '0') {
      ++i_;
    } else if (is_digit(peek())) {
      while (is_digit(peek())) ++i_;
    } else {
      fail("expected a digit in a number");
    }
    bool integer = true;
    if (peek() == '.') {
      integer = false;
      ++i_;
      if (!is_digit(peek())) fail("expected a digit after the decimal point");
      while (is_digit(peek())) ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!is_digit(peek())) fail("expected a digit in the exponent");
      while (is_digit(peek())) ++i_;
    }
    const std::string_view token = s_.substr(start, i_ - start);
    if (integer) {
      // Out of range: a double, as nlohmann reads it.
      if (negative) {
        std::int64_t v = 0;
        const auto r = std::from_chars(token.data(), token.data() + token.size(), v);
        if (r.ec == std::errc{}) {
          out = v;
          return;
        }
      } else {
        std::uint64_t v = 0;
        const auto r = std::from_chars(token.data(), token.data() + token.size(), v);
        if (r.ec == std::errc{}) {
          out = v;
          return;
        }
      }
    }
    const std::string text(token);  // strtod reads up to a NUL
    const double v = strtod_l(text.c_str(), nullptr, c_locale());
    if (!std::isfinite(v)) {
      i_ = start;
      fail("number " + text + " is out of the range of a double");
    }
    out = v;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

json parse_json(std::string_view text) { return Parser(text).parse(); }

}  // namespace crier::detail
