// crier's parser of event data against nlohmann::json::parse, which it stands in for: the
// same value, type for type, for every text nlohmann reads, and an error for every text it
// refuses (the fuzz target json_data compares them on anything).
#include <gtest/gtest.h>

#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/json_parse.hpp"
#include "json_same.hpp"

namespace {

using crier::detail::parse_json;

// "ok" when both read `text` alike, else what differs.
std::string compare(const std::string& text) {
  nlohmann::json theirs, ours;
  bool they_read = true, we_read = true;
  std::string our_error;
  try {
    theirs = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    they_read = false;
  }
  try {
    ours = parse_json(text);
  } catch (const std::invalid_argument& e) {
    we_read = false;
    our_error = e.what();
  }
  if (they_read != we_read)
    return they_read ? "refused what nlohmann reads: " + our_error : "read what nlohmann refuses: " + ours.dump();
  if (they_read && !test::same_json(theirs, ours)) return "read differently: " + ours.dump() + " vs " + theirs.dump();
  return "ok";
}

const std::vector<std::string> kTexts = {
    // Read by both.
    R"({"note":"a payment of about a hundred bytes","sent_ns":123456789})",
    "  {\n\t\"a\" : [1, -2, 3.5, -0.0, 1e3, 1E-3, 2.5e+2, true, false, null, {}, []] }\r\n",
    R"([0, -0, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809])",
    R"(["\" \\ \/ \b \f \n \r \t", "\u0041\u00e9\u20ac\ud83d\ude00", "\u0000", "é€😀"])",
    R"({"k": 1, "k": 2, "a": {"k": [1, {"k": null}]}})",
    "\xEF\xBB\xBF{\"after a byte order mark\": 1}",
    R"("a string alone")",
    "42",
    "-7",
    "3.14159",
    "1e308",
    "4.9e-324",
    "1e-400",
    "true",
    "null",
    R"([[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]])",
    "\"\x7F\"",
    // Refused by both.
    "",
    "   ",
    "{",
    "}",
    "[1,]",
    "[,1]",
    "{\"a\":1,}",
    "{\"a\" 1}",
    "{a:1}",
    "{'a':1}",
    "[1 2]",
    "01",
    "-",
    "+1",
    ".5",
    "1.",
    "1e",
    "1e+",
    "--1",
    "0x10",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e309",
    "-1e309",
    "tru",
    "nul",
    "True",
    "[1] [2]",
    "{} x",
    "\"unclosed",
    "\"a\nb\"",
    "\"tab\there\"",
    "\"\\x41\"",
    "\"\\u12\"",
    "\"\\u12G4\"",
    "\"\\ud83d\"",
    "\"\\ud83d\\u0041\"",
    "\"\\ude00\"",
    "\"\xFF\"",
    "\"\xC0\x80\"",
    "\"\xED\xA0\x80\"",
    "\"\xF4\x90\x80\x80\"",
    "\"\xE2\x82\"",
    "\xEF\xBB",
    "\xEF\xBB\xBF",
    "[\"a\"\x00]",
    std::string("[1]\0", 4),
    "/* comment */ 1",
    "[1] // comment",
};

TEST(JsonParse, ReadsWhatNlohmannReadsAndRefusesWhatItRefuses) {
  for (const auto& text : kTexts) EXPECT_EQ(compare(text), "ok") << "text: " << text;
}

// Every text of the table above cut, doubled, or with one byte changed, inserted or taken
// out: texts near valid ones, where a parser's edge cases are.
TEST(JsonParse, AgreesWithNlohmannOnTextsOneEditFromValidOnes) {
  std::mt19937 random(20261204);  // fixed: a failure is found again
  const std::string alphabet = "{}[]\":,.-+eE0123456789 \\/ubfnrt\x01\x7F\xC3\xA9\xED\xF0\xFFtruefalsenull";
  int compared = 0;
  for (const auto& base : kTexts) {
    for (int k = 0; k < 400; ++k) {
      std::string text = base;
      const std::size_t at = text.empty() ? 0 : random() % (text.size() + 1);
      const char c = alphabet[random() % alphabet.size()];
      switch (random() % 5) {
        case 0:
          if (at < text.size()) text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        case 2:
          if (at < text.size()) text.erase(at, 1);
          break;
        case 3:
          text.resize(at);
          break;
        default:
          text += base;
          break;
      }
      ASSERT_EQ(compare(text), "ok") << "text: " << text;
      ++compared;
    }
  }
  EXPECT_EQ(compared, static_cast<int>(kTexts.size()) * 400);
}

TEST(JsonParse, NestingAsDeepAsMemoryAllowsDoesNotExhaustTheStack) {
  constexpr int kDepth = 1'000'000;
  const std::string text = std::string(kDepth, '[') + std::string(kDepth, ']');
  const nlohmann::json j = parse_json(text);
  const nlohmann::json* p = &j;
  int depth = 0;
  while (p->is_array() && !p->empty()) {
    p = &(*p)[0];
    ++depth;
  }
  EXPECT_EQ(depth, kDepth - 1);
  EXPECT_THROW(parse_json(std::string(kDepth, '[') + std::string(kDepth - 1, ']')), std::invalid_argument);
}

TEST(JsonParse, AnErrorSaysWhatIsWrongAndAtWhichByte) {
  auto error = [](const std::string& text) {
    try {
      (void)parse_json(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error(R"({"a": 1 "b": 2})"), "expected ',' or '}' in an object at byte 8");
  EXPECT_EQ(error("[1, 2"), "expected ',' or ']' in an array at byte 5");
  EXPECT_EQ(error("\"caf\xC3\""), "a string is not UTF-8 at byte 4");
  EXPECT_EQ(error("[1e999]"), "number 1e999 is out of the range of a double at byte 1");
  EXPECT_EQ(error(R"({"a": 1} x)"), "unexpected text after the JSON value at byte 9");
  EXPECT_EQ(error(""), "expected a value, found the end of the text at byte 0");
}

}  // namespace
