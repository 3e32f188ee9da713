#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <thread>

#include <crier/crier.hpp>
#include <crier/json.hpp>

#include "common/utf8.hpp"

namespace {

TEST(Uuid, V7IsVersionedTimeOrderedAndUnique) {
  std::set<crier::Uuid> seen;
  crier::Uuid prev = crier::Uuid::v7();
  const auto now_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  for (int i = 0; i < 100000; ++i) {
    const crier::Uuid u = crier::Uuid::v7();
    ASSERT_EQ(u.bytes[6] >> 4, 7);     // version
    ASSERT_EQ(u.bytes[8] >> 6, 0b10);  // variant
    ASSERT_GT(u, prev) << "not monotonic within a thread at " << i;
    prev = u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 100000u);
  EXPECT_LE(prev.unix_ms() - now_ms, 5000u);
}

TEST(Uuid, UniqueAcrossThreads) {
  std::vector<std::vector<crier::Uuid>> per(4);
  {
    std::vector<std::jthread> ts;
    for (auto& v : per)
      ts.emplace_back([&v] {
        for (int i = 0; i < 20000; ++i) v.push_back(crier::Uuid::v7());
      });
  }
  std::set<crier::Uuid> all;
  for (auto& v : per) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), 80000u);
}

TEST(Uuid, TextRoundTripAndBadInput) {
  const crier::Uuid u = crier::Uuid::v7();
  const std::string text = u.to_string();
  ASSERT_EQ(text.size(), 36u);
  EXPECT_EQ(crier::Uuid::parse(text), u);
  for (const char* bad : {"", "nope", "0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5", "0190a0b1-c2d3-7e4f-8a9b_0c1d2e3f4a5b",
                          "0190a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5g"})
    EXPECT_THROW(crier::Uuid::parse(bad), crier::Error) << bad;
  EXPECT_TRUE(crier::Uuid{}.is_nil());
}

TEST(Time, FormatsAndParsesRfc3339) {
  const crier::Timestamp t = crier::parse_time("2026-11-27T09:30:00.123456Z");
  EXPECT_EQ(crier::format_time(t), "2026-11-27T09:30:00.123456Z");
  EXPECT_EQ(crier::parse_time("2026-11-27T10:30:00.123456+01:00"), t);
  EXPECT_EQ(crier::format_time(crier::parse_time("1999-01-01T00:00:00Z")), "1999-01-01T00:00:00.000000Z");
  for (const char* bad : {"", "2026-11-27", "2026-11-27T09:30:00", "2026-13-27T09:30:00Z", "2026-11-27T09:30:00Zjunk",
                          "2026-11-27T09:30:00.Z"})
    EXPECT_THROW(crier::parse_time(bad), crier::Error) << bad;
}

// Found by fuzzing: before 1970, formatting rounded to the later microsecond.
TEST(Time, ATimeBefore1970IsFormattedDownToItsMicrosecond) {
  const crier::Timestamp t = crier::parse_time("1777-09-21T00:12:43.145224192+01:30");
  EXPECT_EQ(crier::format_time(t), "1777-09-20T22:42:43.145224Z");
  EXPECT_EQ(crier::parse_time(crier::format_time(t)), std::chrono::floor<std::chrono::microseconds>(t));
}

TEST(Time, TimesATimestampCannotHoldAreRefusedNotWrapped) {
  for (const char* far :
       {"9999-12-31T23:59:59Z", "2262-04-12T00:00:00Z", "1677-09-21T00:00:00Z", "0001-01-01T00:00:00Z"}) {
    try {
      (void)crier::parse_time(far);
      ADD_FAILURE() << far << " was accepted";
    } catch (const crier::Error& e) {
      EXPECT_NE(std::string(e.what()).find("outside the representable range"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(far), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(crier::format_time(crier::parse_time("2262-04-10T23:59:59.999999Z")), "2262-04-10T23:59:59.999999Z");
  EXPECT_EQ(crier::format_time(crier::parse_time("1677-09-22T00:00:00Z")), "1677-09-22T00:00:00.000000Z");
  crier::Envelope e;
  e.id = "x";
  e.source = "/elsewhere";
  e.type = "com.example.far";
  e.time = "9999-12-31T23:59:59Z";
  try {
    e.validate();
    ADD_FAILURE() << "an envelope with a time in 9999 validated";
  } catch (const crier::Error& err) {
    EXPECT_EQ(err.code(), crier::Errc::invalid_envelope);
    EXPECT_NE(std::string(err.what()).find("time: "), std::string::npos) << err.what();
  }
}

crier::Envelope sample() {
  crier::Envelope e;
  e.id = crier::Uuid::v7().to_string();
  e.source = "/shop/orders";
  e.type = "com.example.order.placed";
  e.subject = "o-1";
  e.time = "2026-11-27T09:30:00.000001Z";
  e.datacontenttype = "application/json";
  e.extensions = {{"correlationid", e.id}, {"partitionkey", "c-9"}};
  e.data = R"({"id":"o-1","quantity":2})";
  return e;
}

TEST(Envelope, StructuredJsonRoundTrip) {
  const crier::Envelope e = sample();
  const std::string json = e.to_json();
  const auto j = nlohmann::json::parse(json);
  EXPECT_EQ(j["specversion"], "1.0");
  EXPECT_EQ(j["data"]["quantity"], 2);  // JSON data is embedded, not quoted
  EXPECT_EQ(j["partitionkey"], "c-9");
  const crier::Envelope back = crier::Envelope::from_json(json);
  EXPECT_EQ(back.id, e.id);
  EXPECT_EQ(back.type, e.type);
  EXPECT_EQ(back.subject, e.subject);
  EXPECT_EQ(back.time, e.time);
  EXPECT_EQ(back.extensions, e.extensions);
  EXPECT_EQ(nlohmann::json::parse(back.data), nlohmann::json::parse(e.data));
}

TEST(Envelope, BinaryDataTravelsAsBase64) {
  crier::Envelope e = sample();
  e.datacontenttype = "application/octet-stream";
  e.data = std::string(
      "\x00\x01\xfe\xff"
      "abc",
      7);
  const auto j = nlohmann::json::parse(e.to_json());
  EXPECT_EQ(j["data_base64"], "AAH+/2FiYw==");
  EXPECT_EQ(crier::Envelope::from_json(e.to_json()).data, e.data);
}

// Found by fuzzing: bytes that are not JSON under a JSON content type (or none) made to_json
// throw (invalid UTF-8), or come back quoted.
TEST(Envelope, DataThatIsNotJsonTravelsAsBase64WhateverTheContentType) {
  for (const char* type : {"", "application/json"}) {
    crier::Envelope e = sample();
    e.datacontenttype = type;
    e.data = std::string("\x00\xff not json", 11);
    const auto j = nlohmann::json::parse(e.to_json());
    EXPECT_TRUE(j.contains("data_base64")) << type;
    EXPECT_EQ(crier::Envelope::from_json(e.to_json()).data, e.data) << type;
  }
}

TEST(Envelope, MalformedInputGetsAClearError) {
  struct Case {
    const char* json;
    const char* says;
  };
  const Case cases[] = {
      {"not json", "not valid JSON"},
      {"[1,2]", "must be an object"},
      {R"({"specversion":"1.0","source":"/s","type":"a.b"})", "id is missing"},
      {R"({"specversion":"0.3","id":"1","source":"/s","type":"a.b"})", "specversion"},
      {R"({"specversion":"1.0","id":"1","type":"a.b"})", "source is missing"},
      {R"({"specversion":"1.0","id":"1","source":"/s"})", "type is missing"},
      {R"({"specversion":"1.0","id":1,"source":"/s","type":"a.b"})", "'id' must be a string"},
      {R"({"specversion":"1.0","id":"1","source":"/s","type":"a.b","time":"yesterday"})", "time"},
      {R"({"specversion":"1.0","id":"1","source":"/s","type":"a.b","Bad_Ext":"x"})", "Bad_Ext"},
      {R"({"specversion":"1.0","id":"1","source":"/s","type":"a.b","ext":{"a":1}})", "'ext'"},
      {R"({"specversion":"1.0","id":"1","source":"/s","type":"a.b","data_base64":"***"})", "data_base64"},
      // Found by fuzzing: "data" was read before the content type was checked.
      {R"({"specversion":"1.0","id":"1","source":"/s","type":"a.b","data":"x","datacontenttype":5})",
       "'datacontenttype' must be a string"},
      // Found by fuzzing: NATS carries it as a header as it is, cut short at a NUL (or split
      // into two headers at a line end).
      {R"({"specversion":"1.0","id":"1","source":"/s","type":"a.b","datacontenttype":"text/plain\r\nNats-Msg-Id: 1"})",
       "datacontenttype has a control character (byte 13)"},
      {R"({"specversion":"1.0","id":"1","source":"/s","type":"a.b","datacontenttype":"\u0000"})",
       "datacontenttype has a control character (byte 0)"},
  };
  for (const auto& c : cases) {
    try {
      crier::Envelope::from_json(c.json);
      ADD_FAILURE() << "accepted " << c.json;
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::invalid_envelope) << c.json;
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
    }
  }
}

}  // namespace

// CloudEvents strings are Unicode, and JSON (structured mode, the tools) carries nothing else.
TEST(Envelope, AnAttributeThatIsNotUtf8IsRefusedByName) {
  struct Case {
    const char* bytes;
    const char* says;
  };
  const Case cases[] = {
      {"order-\xff", "byte 0xFF at offset 6"},       {"M\xfcller", "byte 0xFC at offset 1"},  // Latin-1
      {"\xc0\xaf", "byte 0xC0 at offset 0"},                                                  // an overlong '/'
      {"a\xed\xa0\x80", "byte 0xED at offset 1"},                                             // a UTF-16 surrogate
      {"\xf4\x90\x80\x80", "byte 0xF4 at offset 0"},                                          // above U+10FFFF
      {"cut \xe2\x82", "byte 0xE2 at offset 4"},                                              // a character cut short
  };
  for (const auto& c : cases) {
    crier::Envelope e = sample();
    e.subject = c.bytes;
    try {
      e.validate();
      ADD_FAILURE() << "accepted subject " << testing::PrintToString(std::string(c.bytes));
    } catch (const crier::Error& err) {
      EXPECT_EQ(err.code(), crier::Errc::invalid_envelope);
      EXPECT_NE(std::string(err.what()).find(std::string("subject is not UTF-8 (") + c.says + ")"), std::string::npos)
          << err.what();
    }
  }
  crier::Envelope e = sample();
  e.extensions["region"] = "\xff";
  EXPECT_THROW(e.validate(), crier::Error);
  e = sample();
  e.source = "/shop/\xff";
  EXPECT_THROW(e.validate(), crier::Error);
  e = sample();
  e.subject = "M\xc3\xbcller \xe2\x82\xac \xf0\x9d\x84\x9e";  // ü, €, and a character beyond 16 bits
  e.extensions["region"] = "\xe6\x9d\xb1\xe4\xba\xac";        // 東京
  EXPECT_NO_THROW(e.validate());
}

TEST(Envelope, AttributesThatAreNotUtf8AreRefusedBeforeAnEventIsBuilt) {
  crier::Attributes a;
  a.subject = "order-\xff";
  try {
    crier::validate(a);
    ADD_FAILURE() << "accepted";
  } catch (const crier::Error& err) {
    EXPECT_EQ(err.code(), crier::Errc::invalid_argument);
    EXPECT_NE(std::string(err.what()).find("subject is not UTF-8 (byte 0xFF at offset 6)"), std::string::npos)
        << err.what();
  }
  a = {};
  a.extensions = {{"region", "M\xfcller"}};
  EXPECT_THROW(crier::validate(a), crier::Error);
  a = {};
  a.partition_key = "\xff";
  EXPECT_THROW(crier::validate(a), crier::Error);
}

// What validate() refuses may still have to be shown (an event stored before, a dead letter).
TEST(Envelope, ToJsonWritesBytesThatAreNotUtf8AsReplacementCharacters) {
  crier::Envelope e = sample();
  e.subject = "order-\xff";
  std::string text;
  ASSERT_NO_THROW(text = e.to_json());
  EXPECT_EQ(nlohmann::json::parse(text)["subject"], "order-\xef\xbf\xbd");
}

// The checker against the definition, exhaustively: the UTF-8 of every code point (as
// append_utf8 writes it) is accepted, and of all strings of one to three bytes, exactly those
// made of whole characters are (with a = 128 one-byte, b = 1,920 two-byte and c = 61,440
// three-byte characters, surrogates excluded: a, a^2 + b and a^3 + 2ab + c of them).
TEST(Utf8, EveryCodePointIsAcceptedAndOfAllShortStringsOnlyWholeCharacters) {
  using crier::detail::invalid_utf8_at;
  constexpr auto npos = std::string_view::npos;
  for (std::uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    crier::detail::append_utf8(s, cp);
    ASSERT_EQ(invalid_utf8_at(s), npos) << "U+" << std::hex << cp;
  }
  std::uint64_t valid[4] = {};
  char bytes[3];
  for (std::uint32_t v = 0; v < (1u << 24); ++v) {
    bytes[0] = static_cast<char>(v >> 16);
    bytes[1] = static_cast<char>(v >> 8);
    bytes[2] = static_cast<char>(v);
    if (v < (1u << 8) && invalid_utf8_at(std::string_view(bytes + 2, 1)) == npos) ++valid[1];
    if (v < (1u << 16) && invalid_utf8_at(std::string_view(bytes + 1, 2)) == npos) ++valid[2];
    if (invalid_utf8_at(std::string_view(bytes, 3)) == npos) ++valid[3];
  }
  const std::uint64_t a = 128, b = 1920, c = 61440;
  EXPECT_EQ(valid[1], a);
  EXPECT_EQ(valid[2], a * a + b);
  EXPECT_EQ(valid[3], a * a * a + 2 * a * b + c);
}
