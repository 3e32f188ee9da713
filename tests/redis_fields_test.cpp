// The Redis transport's pure parts: the CloudEvents field mapping and stream entry ids.
#include <gtest/gtest.h>

#include <crier/error.hpp>

#include <optional>

#include "redis/fields.hpp"

using namespace crier::redis;

namespace {

crier::Envelope sample() {
  crier::Envelope e;
  e.id = "0192d7a0-0000-7000-8000-000000000001";
  e.source = "/crier/host/1";
  e.type = "com.example.order.placed";
  e.time = "2026-12-03T09:00:00.123456Z";
  e.subject = "order 7 \"quoted\" caf\xC3\xA9";
  e.datacontenttype = "application/json";
  e.extensions["partitionkey"] = "customer-3";
  e.data = std::string("{\"n\":1}\0binary", 14);
  return e;
}

// The error code reading `f` throws; nullopt when it reads.
std::optional<crier::Errc> code_of(const Fields& f) {
  try {
    (void)envelope_of(f);
  } catch (const crier::Error& e) {
    return e.code();
  }
  return std::nullopt;
}

}  // namespace

TEST(RedisFields, AnEventIsItsAttributesAsFieldsAndComesBackWhole) {
  const crier::Envelope e = sample();
  const Fields f = fields_of(e);
  EXPECT_EQ(f.front(), (std::pair<std::string, std::string>{"ce_specversion", "1.0"}));
  EXPECT_EQ(*field(f, "ce_partitionkey"), "customer-3");
  EXPECT_EQ(*field(f, "content-type"), "application/json");
  EXPECT_EQ(field(f, "data")->size(), 14u);  // binary-safe
  const crier::Envelope back = envelope_of(f);
  EXPECT_EQ(back.id, e.id);
  EXPECT_EQ(back.subject, e.subject);
  EXPECT_EQ(back.time, e.time);
  EXPECT_EQ(back.extensions, e.extensions);
  EXPECT_EQ(back.data, e.data);
}

TEST(RedisFields, AnEntryThatIsNotAValidEventSaysWhy) {
  EXPECT_EQ(code_of({{"hello", "world"}}), crier::Errc::invalid_envelope);
  try {
    (void)envelope_of({{"hello", "world"}});
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a CloudEvent"), std::string::npos) << e.what();
  }
  Fields no_id = fields_of(sample());
  no_id.erase(no_id.begin() + 1);
  EXPECT_EQ(code_of(no_id), crier::Errc::invalid_envelope);
  Fields twice = fields_of(sample());
  twice.emplace_back("ce_id", "again");
  EXPECT_EQ(code_of(twice), crier::Errc::invalid_envelope);
  Fields bad_extension = fields_of(sample());
  bad_extension.emplace_back("ce_Bad-Name", "x");
  EXPECT_EQ(code_of(bad_extension), crier::Errc::invalid_envelope);
  Fields latin1 = fields_of(sample());
  for (auto& [name, value] : latin1)
    if (name == "ce_subject") value = "M\xfcller";  // written by another client, not UTF-8
  try {
    (void)envelope_of(latin1);
    ADD_FAILURE() << "a subject that is not UTF-8 was accepted";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("subject is not UTF-8 (byte 0xFC at offset 1)"), std::string::npos)
        << e.what();
  }
  Fields other = fields_of(sample());
  other.emplace_back("trace", "not an attribute");  // other fields are ignored
  EXPECT_EQ(code_of(other), std::nullopt);
}

TEST(RedisFields, WhatCannotBeReadIsShownWithWhatItHas) {
  const crier::Envelope e = readable_envelope({{"hello", "world"}}, "p:com.example.x", "5-0", "com.example.x");
  EXPECT_EQ(e.id, "p:com.example.x-5-0");
  EXPECT_EQ(e.type, "com.example.x");
  EXPECT_EQ(e.data, "{\"hello\":\"world\"}");
}

TEST(RedisFields, EntryIdsParseAndStepBack) {
  EXPECT_EQ(parse_entry_id("1700000000000-3"), (EntryId{1700000000000, 3}));
  EXPECT_EQ(parse_entry_id("17"), (EntryId{17, 0}));
  EXPECT_EQ(parse_entry_id("x-1"), std::nullopt);
  EXPECT_EQ(parse_entry_id("1-"), std::nullopt);
  EXPECT_EQ(parse_entry_id(""), std::nullopt);
  EXPECT_EQ(id_before({5, 2}), "5-1");
  EXPECT_EQ(id_before({5, 0}), "4-18446744073709551615");
  EXPECT_EQ(id_before({0, 0}), "0-0");
  EXPECT_TRUE(id_less("9-5", "10-0"));  // numbers, not text
  EXPECT_FALSE(id_less("10-0", "9-5"));
}

TEST(RedisFields, AnEntryThatIsNoEventKeepsItsFieldsWhenTaken) {
  Fields f = fields_of(sample());
  for (auto& [name, value] : f)
    if (name == "ce_time") value = "yesterday";
  const Fields before = f;
  EXPECT_THROW((void)take_envelope(f), crier::Error);
  EXPECT_EQ(f, before);  // whole, for the dead letter that shows it
  f = fields_of(sample());
  EXPECT_EQ(take_envelope(f).data, sample().data);
}
