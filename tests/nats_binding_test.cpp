// The NATS transport's pure parts: how names map to NATS names, the CloudEvents binding, and
// how JetStream's answer to a publish is read.
#include <gtest/gtest.h>

#include <crier/error.hpp>

#include <algorithm>

#include "nats/binding.hpp"
#include "nats/header_block.hpp"
#include "nats/names.hpp"
#include "nats/publish_answer.hpp"

using namespace crier::nats;

TEST(NatsNames, EventTypesAreSubjectsUnderThePrefix) {
  EXPECT_EQ(subject_of("crier", "com.example.order.placed"), "crier.com.example.order.placed");
  EXPECT_EQ(type_of_subject("crier", "crier.com.example.order.placed"), "com.example.order.placed");
  EXPECT_EQ(type_of_subject("crier", "crier-dlq.x_sy"), std::nullopt);
  EXPECT_EQ(type_of_subject("crier", "other.com.example.x"), std::nullopt);
  EXPECT_EQ(type_of_subject("crier", "crier.single"), std::nullopt);  // not an event type name
}

TEST(NatsNames, DurableNamesHaveNoDotsAndMapBack) {
  for (auto [sub, type] : std::vector<std::pair<std::string, std::string>>{
           {"billing", "com.example.order.placed"}, {"a_s", "x_d.y_u"}, {"a_", "a.b"}, {"x-y_", "a_.b__c"}}) {
    const std::string d = durable_of(sub, type);
    EXPECT_EQ(d.find('.'), std::string::npos) << d;
    const auto back = parse_durable(d);
    ASSERT_TRUE(back) << d;
    EXPECT_EQ(back->first, sub);
    EXPECT_EQ(back->second, type);
  }
  EXPECT_NE(durable_of("a_s", "b.c"), durable_of("a", "s_b.c"));
  EXPECT_EQ(parse_durable("nothing-crier-made"), std::nullopt);
  EXPECT_EQ(parse_durable("billing_scom_dx_r"), std::nullopt);  // a redrive consumer's name is not one
  EXPECT_THROW((void)durable_of(std::string(128, 'a'), "a." + std::string(200, 'b')), crier::Error);
}

TEST(NatsNames, StreamNamesAndPrefixesAreSingleTokens) {
  EXPECT_TRUE(is_valid_stream_name("ORDERS"));
  EXPECT_TRUE(is_valid_stream_name("crier-test-AbC_1"));
  EXPECT_FALSE(is_valid_stream_name("ORD.ERS"));
  EXPECT_FALSE(is_valid_stream_name("a b"));
  EXPECT_FALSE(is_valid_stream_name(""));
  EXPECT_FALSE(is_valid_subject_prefix("a.b"));
  EXPECT_FALSE(is_valid_subject_prefix("a>"));
}

TEST(NatsNames, ServerUrlsNameAHostAndAPortThatIsOne) {
  for (const char* good : {"nats://127.0.0.1:4222", "127.0.0.1", "tls://user:p@ss@host:1", "nats://[::1]:65535",
                           "nats://[::1]", "nats://host/"})
    EXPECT_EQ(server_url_problem(good), "") << good;
  EXPECT_EQ(server_url_problem("nats://127.0.0.1:99999"), "port '99999' is not 1 to 65535");
  EXPECT_EQ(server_url_problem("nats://127.0.0.1:abc"), "port 'abc' is not 1 to 65535");
  EXPECT_EQ(server_url_problem("nats://127.0.0.1:"), "port '' is not 1 to 65535");
  EXPECT_EQ(server_url_problem("nats://:4222"), "it names no host");
  EXPECT_EQ(server_url_problem(""), "it names no host");
  EXPECT_EQ(server_url_problem("nats://::1:4222"), "an IPv6 address goes in brackets: [::1]:4222");
  EXPECT_EQ(server_url_problem("nats://[::1:4222"), "an IPv6 address lacks its ']'");
}

TEST(NatsNames, DeliveryReplySubjectsTellCountSequenceAndTime) {
  const auto old_form = parse_delivery("$JS.ACK.ORDERS.billing_scom_dx.3.17.9.1700000000123456789.4");
  ASSERT_TRUE(old_form);
  EXPECT_EQ(old_form->count, 3u);
  EXPECT_EQ(old_form->seq, 17u);
  EXPECT_EQ(old_form->ns, 1700000000123456789);
  const auto new_form = parse_delivery("$JS.ACK.hub.ACCHASH.ORDERS.billing.1.42.40.1700000000000000000.0.rand");
  ASSERT_TRUE(new_form);
  EXPECT_EQ(new_form->count, 1u);
  EXPECT_EQ(new_form->seq, 42u);
  EXPECT_EQ(parse_delivery("_INBOX.abc"), std::nullopt);
  EXPECT_EQ(parse_delivery("$JS.ACK.ORDERS.billing.x.17.9.1.4"), std::nullopt);   // not a number
  EXPECT_EQ(parse_delivery("$JS.ACK.ORDERS.billing.3.17x.9.1.4"), std::nullopt);  // not only a number
  EXPECT_EQ(parse_delivery("$JS.ACK.ORDERS.billing.3..9.1.4"), std::nullopt);     // empty
}

TEST(NatsBinding, PercentEncodingCoversWhatTheBindingSays) {
  EXPECT_EQ(percent_encode("plain-text/ok"), "plain-text/ok");
  EXPECT_EQ(percent_encode("a b\"c%d"), "a%20b%22c%25d");
  EXPECT_EQ(percent_encode("\xC3\xA9"), "%C3%A9");
  EXPECT_EQ(percent_decode("a%20b%22c%25d%C3%A9", "ce-x"), "a b\"c%d\xC3\xA9");
  EXPECT_THROW((void)percent_decode("bad%2", "ce-x"), crier::Error);
  EXPECT_THROW((void)percent_decode("bad%zz", "ce-x"), crier::Error);
}

crier::Envelope sample() {
  crier::Envelope e;
  e.id = "0191b2c4-0000-7000-8000-000000000001";
  e.source = "/crier/host/1";
  e.type = "com.example.order.placed";
  e.subject = "order 7";
  e.time = "2026-12-02T10:00:00.000001Z";
  e.datacontenttype = "application/json";
  e.extensions = {{"partitionkey", "customer-3"},
                  {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
  e.data = R"({"n":7})";
  return e;
}

// Error texts in a dead letter are cut to fit the server's max_payload: between characters,
// saying how long they were, never longer than the room.
TEST(NatsBinding, EncodingWithinARoomCutsBetweenCharactersAndSaysSo) {
  EXPECT_EQ(percent_encode_within("a b", 5), "a%20b");
  std::string ascii, accents;  // 40 bytes each; "\xC3\xA9" is one character, six bytes encoded
  for (int i = 0; i < 4; ++i) ascii += "abcdefghij";
  for (int i = 0; i < 20; ++i) accents += "\xC3\xA9";
  const std::string note = "%20[cut:%2040%20bytes%20in%20all]";
  EXPECT_EQ(percent_encode_within(ascii, note.size() + 3), "abc" + note);
  EXPECT_EQ(percent_encode_within(accents, note.size() + 11), "%C3%A9" + note);
  EXPECT_EQ(percent_encode_within(accents, note.size() + 12), "%C3%A9%C3%A9" + note);
  EXPECT_EQ(percent_encode_within(ascii, note.size() - 1), "");
  for (std::size_t room = note.size(); room < 80; ++room) {
    const std::string cut = percent_encode_within(accents, room);
    EXPECT_LE(cut.size(), room);
    EXPECT_EQ((cut.size() - note.size()) % 6, 0u) << "cut inside a character at room " << room;
  }
}

TEST(NatsBinding, BinaryModeRoundTrips) {
  const auto e = sample();
  const Headers owned = binary_headers(e);
  const HeaderViews h = views_of(owned);
  EXPECT_EQ(*header(h, "ce-subject"), "order%207");
  EXPECT_EQ(*header(h, "Content-Type"), "application/json");
  EXPECT_EQ(carried_as(h), Carried::binary);
  const auto back = envelope_of(h, e.data, {});
  EXPECT_EQ(back.id, e.id);
  EXPECT_EQ(back.subject, "order 7");
  EXPECT_EQ(back.extensions, e.extensions);
  EXPECT_EQ(back.datacontenttype, "application/json");
  EXPECT_EQ(back.data, e.data);
}

// In name order: cnats 3.4.1 files a header added after one whose name it starts under that
// one (an extension "ti" under ce-time, "ty" under ce-type).
TEST(NatsBinding, BinaryHeadersComeInNameOrder) {
  auto e = sample();
  e.extensions["ti"] = "1";
  e.extensions["ty"] = "2";
  e.extensions["a"] = "3";
  e.extensions["zz"] = "4";
  std::vector<std::string> names;
  for (const auto& [name, value] : binary_headers(e)) names.push_back(name);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end())) << testing::PrintToString(names);
  EXPECT_EQ(names.size(), 6 + 1 + e.extensions.size());  // six attributes, content-type, extensions
  EXPECT_EQ(envelope_of(views_of(binary_headers(e)), e.data, {}).extensions, e.extensions);
}

TEST(NatsBinding, AnEmptyExtensionIsKept) {  // found by fuzz_nats_message
  auto e = sample();
  e.extensions["tenant"] = "";
  const auto back = envelope_of(views_of(binary_headers(e)), e.data, {});
  ASSERT_EQ(back.extensions.count("tenant"), 1u);
  EXPECT_EQ(back.extensions.at("tenant"), "");
}

TEST(NatsBinding, ModesAreDetectedAsTheBindingSays) {
  EXPECT_EQ(carried_as({{"Content-Type", "application/cloudevents+json"}, {"ce-specversion", "1.0"}}),
            Carried::structured);
  EXPECT_EQ(carried_as({{"CE-SpecVersion", "1.0"}}), Carried::binary);
  EXPECT_EQ(carried_as({{"content-type", "application/json"}}), Carried::plain);
  const auto e = sample();
  const auto back = envelope_of({{"content-type", "application/cloudevents+json"}}, e.to_json(), {});
  EXPECT_EQ(back.id, e.id);
  EXPECT_EQ(back.extensions, e.extensions);
}

TEST(NatsBinding, APlainMessageTakesItsTypeFromTheSubject) {
  PlainOrigin p{"com.example.order.placed", "ORDERS-42", "nats://ORDERS", "2026-12-02T10:00:00Z"};
  const auto e = envelope_of({{"content-type", "application/json"}}, R"({"n":1})", p);
  EXPECT_EQ(e.type, "com.example.order.placed");
  EXPECT_EQ(e.id, "ORDERS-42");
  EXPECT_EQ(e.source, "nats://ORDERS");
  EXPECT_EQ(e.datacontenttype, "application/json");
}

TEST(NatsBinding, MalformedEventsAreRefusedSayingWhy) {
  auto what = [](const HeaderViews& h, std::string_view payload) -> std::string {
    try {
      (void)envelope_of(h, payload, {});
    } catch (const crier::Error& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(what({{"content-type", "application/cloudevents+json"}}, "{not json").find("JSON"), std::string::npos);
  EXPECT_NE(what({{"content-type", "application/cloudevents-batch+json"}}, "[]").find("batch"), std::string::npos);
  EXPECT_NE(what({{"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-type", "a.b"}}, "").find("source"),
            std::string::npos);
  EXPECT_NE(
      what({{"ce-specversion", "1.0"}, {"ce-id", "%G0"}, {"ce-source", "/x"}, {"ce-type", "a.b"}}, "").find("ce-id"),
      std::string::npos);
  // Percent-decoded, a value must be UTF-8 (the binding says so; a CloudEvents string is).
  const std::string latin1 = what(
      {{"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-source", "/x"}, {"ce-type", "a.b"}, {"ce-subject", "M%FCller"}},
      "");
  EXPECT_NE(latin1.find("subject is not UTF-8 (byte 0xFC at offset 1)"), std::string::npos) << latin1;
  EXPECT_EQ(what({{"content-type", "application/cloudevents+json"}},
                 R"({"specversion":"1.0","id":"1","source":"/x","type":"a.b","subject":"M\u00fcller"})"),
            "accepted")
      << "a JSON escape is UTF-8 once read";
}

TEST(NatsHeaderBlock, NamesWithTheirFirstValueTrimmedInTheOrderTheyCame) {
  using Views = std::vector<std::pair<std::string, std::string>>;
  auto read = [](std::string_view block) {
    HeaderViews out{{"left", "over"}};
    EXPECT_TRUE(parse_header_block(block, out)) << block;
    return Views(out.begin(), out.end());
  };
  EXPECT_EQ(read("NATS/1.0\r\n\r\n"), Views{});
  EXPECT_EQ(read("NATS/1.0\r\nce-id: 1\r\nce-type:  a b \r\nNats-Msg-Id:x\r\n\r\n"),
            (Views{{"ce-id", "1"}, {"ce-type", "a b"}, {"Nats-Msg-Id", "x"}}));
  // Names keep their case, the first value of each counts; a value may hold colons.
  EXPECT_EQ(read("NATS/1.0\r\nA: 1\r\nA: 2\r\na: 3\r\nt: x:y: z\r\n\r\n"),
            (Views{{"A", "1"}, {"a", "3"}, {"t", "x:y: z"}}));
  // All up to the colon is the name; tabs and spaces around a value are not part of it.
  EXPECT_EQ(read("NATS/1.0\r\nk : \tv\t \r\n\r\n"), (Views{{"k ", "v"}}));
  // A value may be empty (cnats 3.4.1 would read the next line as this one's value).
  EXPECT_EQ(read("NATS/1.0\r\nA:\r\nB:  \t\r\nC: 3\r\n\r\n"), (Views{{"A", ""}, {"B", ""}, {"C", "3"}}));
}

TEST(NatsHeaderBlock, WhatItDoesNotReadAsCnatsDoesIsLeftToCnats) {
  for (std::string_view block : {
           "NATS/1.0 404 No Messages\r\n\r\n",  // a status: cnats makes a Status header of it
           "NATS/1.0 503\r\n\r\n",
           "NATS/1.0\r\nA: 1\r\n folded\r\n\r\n",  // a folded line
           "NATS/1.0\r\nA 1\r\n\r\n",              // no colon
           "NATS/1.0\r\n: v\r\n\r\n",              // no name
           "NATS/1.0\r\n\r\n\r\n",                 // an empty line inside
           "NATS/1.0\r\nA: 1\r\n",                 // not ended
           "NATS/2.0\r\n\r\n",
           "",
           "NATS/1.0\r\n",
       }) {
    HeaderViews out;
    EXPECT_FALSE(parse_header_block(block, out)) << block;
  }
  // More names than are compared one with another (repeats of one are not more).
  std::string many = "NATS/1.0\r\n", repeats = many;
  for (int i = 0; i < 65; ++i) many += "h" + std::to_string(i) + ": v\r\n";
  for (int i = 0; i < 1000; ++i) repeats += "h: v\r\n";
  HeaderViews views;
  EXPECT_FALSE(parse_header_block(many + "\r\n", views));
  EXPECT_TRUE(parse_header_block(repeats + "\r\n", views));
  EXPECT_EQ(views.size(), 1u);
  // A block cnats has read: it wrote NULs over the colons and the ends of values.
  const std::string read_by_cnats("NATS/1.0\r\nA\0 1\0\n\r\n", 18);
  HeaderViews out;
  EXPECT_FALSE(parse_header_block(read_by_cnats, out));
}

TEST(NatsHeaderBlock, AStatusIsTheFirstLinesCode) {
  EXPECT_EQ(status_of_block("NATS/1.0 404 No Messages\r\n\r\n"), 404);
  EXPECT_EQ(status_of_block("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\n\r\n"), 100);
  EXPECT_EQ(status_of_block("NATS/1.0 503\r\n\r\n"), 503);
  EXPECT_EQ(status_of_block("NATS/1.0\r\nStatus: 404\r\n\r\n"), 0);  // a header, not a status
  EXPECT_EQ(status_of_block("NATS/1.0\r\n\r\n"), 0);
  EXPECT_EQ(status_of_block(""), 0);
}

TEST(NatsPublishAnswer, AnAcknowledgementSaysWhereAndADuplicateNamesTheFirstCopy) {
  const auto a = read_publish_answer(0, R"({"stream":"ORDERS","seq":42})");
  EXPECT_EQ(a.kind, PublishAnswer::Kind::stored);
  EXPECT_EQ(a.seq, 42u);
  const auto d = read_publish_answer(0, R"({"stream":"ORDERS","seq":7,"duplicate":true})");
  EXPECT_EQ(d.kind, PublishAnswer::Kind::stored);
  EXPECT_EQ(d.seq, 7u);
}

// The usual answer is read without a JSON document; any other spelling of it still reads
// through the parser, so the shortcut decides nothing on its own.
TEST(NatsPublishAnswer, TheUsualAnswerIsReadWithoutADocumentAndOtherSpellingsAreParsed) {
  EXPECT_EQ(read_plain_ack(R"({"stream":"ORDERS","seq":42})"), 42u);
  EXPECT_EQ(read_plain_ack(R"({"stream":"O_1-x","seq":0,"duplicate":true})"), 0u);
  EXPECT_EQ(read_plain_ack(R"({"stream":"ORDERS","seq":18446744073709551615})"), 18446744073709551615u);
  for (const char* other : {R"({"stream":"ORDERS","domain":"hub","seq":3})", R"({"stream": "ORDERS", "seq": 3})",
                            R"({"seq":3,"stream":"ORDERS"})", R"({"stream":"ORDERS","seq":3,"duplicate":false})",
                            R"({"stream":"OR\"DERS","seq":3})", R"({"stream":"","seq":3})"}) {
    EXPECT_EQ(read_plain_ack(other), std::nullopt) << other;
    const auto a = read_publish_answer(0, other);
    EXPECT_EQ(a.kind, PublishAnswer::Kind::stored) << other;
    EXPECT_EQ(a.seq, 3u) << other;
  }
  for (const char* wrong : {R"({"stream":"ORDERS","seq":03})", R"({"stream":"ORDERS","seq":18446744073709551616})",
                            R"({"stream":"ORDERS","seq":-3})", R"({"stream":"ORDERS","seq":3)",
                            R"({"stream":"ORDERS","seq":3}})", R"({"stream":"ORDERS","seq":})"}) {
    EXPECT_EQ(read_plain_ack(wrong), std::nullopt) << wrong;
    EXPECT_NE(read_publish_answer(0, wrong).kind, PublishAnswer::Kind::stored) << wrong;
  }
}

TEST(NatsPublishAnswer, NoLeaderYetIsTriedAgainAndOtherErrorsAreRefusedInWords) {
  EXPECT_EQ(read_publish_answer(503, "").kind, PublishAnswer::Kind::again);
  // A server whose JetStream storage is full: its leader steps down for a replica that may
  // have room, so it is tried again, and what it means is said.
  const auto no_room =
      read_publish_answer(0, R"({"error":{"code":503,"err_code":10023,"description":"insufficient resources"}})");
  EXPECT_EQ(no_room.kind, PublishAnswer::Kind::again);
  EXPECT_EQ(no_room.problem.rfind("insufficient resources (JetStream error 10023): the server's JetStream storage "
                                  "is at its limit (max_file_store",
                                  0),
            0u)
      << no_room.problem;
  EXPECT_EQ(read_publish_answer(0, R"({"error":{"code":408,"description":"timeout"}})").kind,
            PublishAnswer::Kind::again);
  // A full stream's answer, as nats-server 2.9 gives it: 503 as an election's, but final.
  const auto full =
      read_publish_answer(0, R"({"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}})");
  EXPECT_EQ(full.kind, PublishAnswer::Kind::refused);
  EXPECT_EQ(full.err_code, kStoreFailed);
  EXPECT_EQ(full.problem, "maximum bytes exceeded (JetStream error 10077)");
  const auto refused = read_publish_answer(
      0, R"({"stream":"ORDERS","error":{"code":400,"err_code":10047,"description":"insufficient resources"}})");
  EXPECT_EQ(refused.kind, PublishAnswer::Kind::refused);
  EXPECT_EQ(refused.err_code, 10047);
}

// Whatever a broken or hostile server sends is refused with a clear error, never thrown (the
// reader runs on cnats's thread, where an exception would end the process).
TEST(NatsPublishAnswer, AnythingElseIsNotAnAcknowledgementAndNeverThrows) {
  for (const char* body :
       {"", "not json", "[]", "42", R"({"stream":"ORDERS"})", R"({"seq":"7"})", R"({"seq":-1})", R"({"seq":1.5})",
        R"({"seq":null})", R"({"error":"boom"})", R"({"error":{"code":"x"}})", R"({"error":{"description":7}})",
        R"({"error":[1,2]})", R"({"error":{"code":400,"err_code":1e77,"description":"huge"}})"}) {
    const auto a = read_publish_answer(0, body);
    EXPECT_EQ(a.kind, PublishAnswer::Kind::refused) << body;
    EXPECT_FALSE(a.problem.empty()) << body;
    EXPECT_EQ(a.err_code, 0) << body;
  }
  // An error code out of an int's range (found by fuzz_nats_message) reads as none.
  const auto huge = read_publish_answer(0, R"({"error":{"code":400,"err_code":1e77,"description":"huge"}})");
  EXPECT_EQ(huge.problem, "huge (JetStream error 0)");
  const auto numbers = nlohmann::json::parse(R"({"c":-5,"d":4294967296,"e":"7","f":2.5})");
  EXPECT_EQ(error_number(numbers, "c"), -5);
  for (const char* key : {"d", "e", "f", "absent"}) EXPECT_EQ(error_number(numbers, key), 0) << key;
  EXPECT_EQ(read_publish_answer(0, R"({"seq":"7"})").problem,
            "JetStream answered a publish with something that is not an acknowledgement");
}

// Consumer and stream info are read member by member without trusting their shape: a missing
// member reads as none (nlohmann's const operator[] would be undefined behaviour), a count of
// another type is an error naming it (get<uint64_t> of a huge or negative float would be
// undefined behaviour too).
TEST(JetStreamJson, MissingMembersReadAsNoneAndACountOfAnotherShapeIsAnErrorNamingIt) {
  const auto info = nlohmann::json::parse(
      R"({"num_pending":12,"zero":0,"negative":-1,"huge":1e77,"text":"7","name":"orders","ack_floor":{"stream_seq":3}})");
  EXPECT_EQ(count_member(info, "num_pending"), 12u);
  EXPECT_EQ(count_member(info, "zero"), 0u);
  EXPECT_EQ(count_member(info, "absent"), 0u);  // JetStream leaves zeros out
  EXPECT_EQ(count_member(member(info, "ack_floor"), "stream_seq"), 3u);
  EXPECT_EQ(count_member(member(info, "delivered"), "stream_seq"), 0u);
  EXPECT_TRUE(member(nlohmann::json::parse("[1]"), "x").is_null());
  EXPECT_TRUE(member(nlohmann::json(), "x").is_null());
  for (const char* key : {"negative", "huge", "text", "ack_floor"}) {
    try {
      (void)count_member(info, key);
      ADD_FAILURE() << key << " read as a count";
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      EXPECT_NE(std::string(e.what()).find(std::string("JetStream answered ") + key + " = "), std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(text_member(info, "name"), "orders");
  EXPECT_EQ(text_member(info, "num_pending"), "");
  EXPECT_EQ(text_member(info, "absent"), "");
}
