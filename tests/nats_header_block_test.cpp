// Header blocks read in place (src/nats/header_block.hpp) read as cnats reads them: messages
// with generated headers go through a real nats-server, and each received block is read
// both ways. Fails if the cnats linked keeps received messages differently. And messages made
// with their header block written at once arrive as those cnats makes header by header.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "nats/header_block.hpp"
#include "nats/outgoing.hpp"
#include "nats_server.hpp"

using namespace test;
using crier::nats::header_block_of;
using crier::nats::HeaderViews;
using crier::nats::parse_header_block;

namespace {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Header sets as publishers write them: names of every case, repeats, values with spaces,
// tabs and colons; now and then a name starting with a space (a folded line: cnats's to
// read). Nothing cnats 3.4.1 misreads (WhatCnatsMisreadsIsReadRight): no value that is
// empty or blank, no name that starts another.
std::vector<HeaderList> generated(int n) {
  std::mt19937 rng(20261205);
  auto pick = [&](std::string_view from, int len) {
    std::string s;
    for (int i = 0; i < len; ++i) s += from[rng() % from.size()];
    return s;
  };
  constexpr std::string_view kName = "abcXYZ-_.019";
  constexpr std::string_view kValue = "abc XYZ:%/-_.019\t\"";
  std::vector<HeaderList> sets = {
      {},
      {{"ce-specversion", "1.0"}, {"ce-id", "018f"}, {"content-type", "application/json"}, {"Nats-Msg-Id", "018f"}},
      {{"A", "1"}, {"A", "2"}, {"a", "3"}},
      {{"k", "  padded  "}, {"t", "x:y: z"}},
  };
  while (static_cast<int>(sets.size()) < n) {
    HeaderList h;
    const int count = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < count; ++i) {
      std::string name = pick(kName, 1 + static_cast<int>(rng() % 12));
      std::string value = pick(kValue, 1 + static_cast<int>(rng() % 40));
      if (value.find_first_not_of(" \t") == std::string::npos) value += 'v';
      if (rng() % 50 == 0) name = " " + name;
      if (rng() % 10 == 0 && !h.empty()) name = h.front().first;  // a repeat
      const bool starts_another = std::any_of(h.begin(), h.end(), [&](const auto& other) {
        return other.first != name && (other.first.starts_with(name) || name.starts_with(other.first));
      });
      if (starts_another) continue;
      h.emplace_back(std::move(name), std::move(value));
    }
    sets.push_back(std::move(h));
  }
  return sets;
}

// What cnats reads: each name with its first value. It rewrites the block as it reads it.
std::map<std::string, std::string> read_by_cnats(natsMsg* m) {
  std::map<std::string, std::string> out;
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(m, &keys, &count) != NATS_OK) return out;
  for (int i = 0; i < count; ++i) {
    const char* value = nullptr;
    if (natsMsgHeader_Get(m, keys[i], &value) == NATS_OK && value) out[keys[i]] = value;
  }
  free(keys);
  return out;
}

}  // namespace

// A real server and a cnats connection subscribed to "headers" on it. Outside the anonymous
// namespace: the TEST_F classes derive from it.
class NatsReceivedHeaderBlock : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(natsConnection_ConnectTo(&nc_, server_.url().c_str()), NATS_OK);
    ASSERT_EQ(natsConnection_SubscribeSync(&sub_, nc_, "headers"), NATS_OK);
  }
  void TearDown() override {
    natsSubscription_Destroy(sub_);
    natsConnection_Destroy(nc_);
  }
  // Publishes the headers, added in their order, and "data".
  void publish(const HeaderList& headers, const char* reply) {
    natsMsg* m = nullptr;
    ASSERT_EQ(natsMsg_Create(&m, "headers", reply, "data", 4), NATS_OK);
    for (const auto& [name, value] : headers) ASSERT_EQ(natsMsgHeader_Add(m, name.c_str(), value.c_str()), NATS_OK);
    ASSERT_EQ(natsConnection_PublishMsg(nc_, m), NATS_OK);
    natsMsg_Destroy(m);
  }
  // The next message received, to be destroyed by the caller.
  natsMsg* receive() {
    natsMsg* m = nullptr;
    EXPECT_EQ(natsSubscription_NextMsg(&m, sub_, 10000), NATS_OK);
    return m;
  }

  NatsServer server_;
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

TEST_F(NatsReceivedHeaderBlock, ReceivedBlocksReadInPlaceAsCnatsReadsThem) {
  const auto sets = generated(3000);
  for (const auto& set : sets) publish(set, "the.reply");
  publish({}, nullptr);  // no reply, no headers

  std::size_t in_place = 0;
  for (const auto& set : sets) {
    natsMsg* m = receive();
    ASSERT_NE(m, nullptr);
    const auto block = header_block_of(m);
    ASSERT_TRUE(block) << "cnats " << nats_GetVersion() << " keeps received messages differently";
    EXPECT_EQ(block->empty(), set.empty());
    HeaderViews views;
    const bool read = parse_header_block(*block, views);
    const std::string text(*block);
    const HeaderList mine(views.begin(), views.end());  // copied: cnats rewrites the block
    const auto theirs = read_by_cnats(m);
    if (read) {
      ++in_place;
      const std::map<std::string, std::string> mine_by_name(mine.begin(), mine.end());
      EXPECT_EQ(mine_by_name, theirs) << testing::PrintToString(text);
      EXPECT_EQ(mine.size(), theirs.size()) << "a name twice in " << text;
    }
    // Once cnats has read a block, it is cnats's: NULs are written over it.
    if (!set.empty()) {
      EXPECT_FALSE(parse_header_block(*header_block_of(m), views)) << text;
    }
    natsMsg_Destroy(m);
  }
  // All but those with a folded line (about one in ten).
  EXPECT_GT(in_place, sets.size() * 3 / 4);

  natsMsg* m = receive();
  ASSERT_NE(m, nullptr);
  const auto none = header_block_of(m);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  natsMsg_Destroy(m);
}

TEST_F(NatsReceivedHeaderBlock, WhatCnatsMisreadsIsReadRight) {
  // Added in name order: cnats files a header added after one whose name it starts under
  // that one when their hashes agree, as they do for these.
  const HeaderList sent = {
      {"ce-a", "short"}, {"ce-abc", "long"}, {"ce-ti", "1"}, {"ce-time", "2026-12-05T00:00:00Z"}, {"empty", ""}};
  publish(sent, nullptr);
  natsMsg* m = receive();
  ASSERT_NE(m, nullptr);
  const auto block = header_block_of(m);
  ASSERT_TRUE(block);
  HeaderViews views;
  EXPECT_TRUE(parse_header_block(*block, views)) << testing::PrintToString(std::string(*block));
  using ByName = std::map<std::string, std::string>;  // the wire order is cnats's table's
  EXPECT_EQ(ByName(views.begin(), views.end()), ByName(sent.begin(), sent.end()));
  natsMsg_Destroy(m);
}

// What crier sends, made either way (its header block written at once where cnats allows it,
// else header by header through cnats), arrives alike: the same headers, data, subject and
// reply. A line break in a value arrives as a space either way.
TEST_F(NatsReceivedHeaderBlock, MessagesMadeEitherWayArriveAlike) {
  using crier::nats::Build;
  ASSERT_EQ(crier::nats::usual_build(), Build::block) << "cnats " << nats_GetVersion();
  crier::Envelope event;
  event.specversion = "1.0";
  event.id = "0193a1b2-0000-7000-8000-000000000001";
  event.source = "/orders";
  event.type = "com.example.order.placed";
  event.time = "2026-12-06T01:02:03.456Z";
  event.subject = "two\nlines, \"quoted\" 100%";
  event.datacontenttype = "application/json";
  event.extensions = {{"partitionkey", "customer 7"}};
  event.data = R"({"order":1})";
  std::vector<crier::nats::Outgoing> sent;
  sent.push_back({.subject = "headers", .headers = {{"Nats-Msg-Id", event.id}}, .event = &event});
  sent.push_back({.subject = "headers",
                  .headers = {{"content-type", "application/cloudevents+json"}, {"Crier-Last-Error", "a\r\nb\rc"}},
                  .payload = event.to_json()});
  sent.push_back({.subject = "headers", .payload = "no headers"});
  for (const auto& set : generated(300))  // a name starting with a space is only for reading
    if (std::none_of(set.begin(), set.end(), [](const auto& h) { return h.first.starts_with(' '); }))
      sent.push_back({.subject = "headers", .headers = set, .payload = "data"});

  std::string bytes;
  std::vector<std::map<std::string, std::string>> first_three;  // as made from a block
  for (const auto& m : sent) {
    std::vector<std::pair<std::map<std::string, std::string>, std::string>> got;  // (headers, data), each way
    for (const Build how : {Build::block, Build::cnats_headers}) {
      crier::nats::Msg msg;
      ASSERT_EQ(crier::nats::make_message(m, "the.reply", how, bytes, msg), NATS_OK);
      ASSERT_EQ(natsConnection_PublishMsg(nc_, msg.get()), NATS_OK);
      natsMsg* r = receive();
      ASSERT_NE(r, nullptr);
      EXPECT_STREQ(natsMsg_GetSubject(r), "headers");
      EXPECT_STREQ(natsMsg_GetReply(r), "the.reply");
      got.emplace_back(read_by_cnats(r), std::string(natsMsg_GetData(r), natsMsg_GetDataLength(r)));
      natsMsg_Destroy(r);
    }
    EXPECT_EQ(got[0], got[1]);
    if (first_three.size() < 3) first_three.push_back(got[0].first);
  }
  ASSERT_EQ(first_three.size(), 3u);
  EXPECT_EQ(first_three[0].at("ce-subject"), "two%0Alines,%20%22quoted%22%20100%25");
  EXPECT_EQ(first_three[0].at("ce-partitionkey"), "customer%207");
  EXPECT_EQ(first_three[0].at("Nats-Msg-Id"), event.id);
  EXPECT_EQ(first_three[0].size(), 9u);
  EXPECT_EQ(first_three[1].at("Crier-Last-Error"), "a  b c");
  EXPECT_TRUE(first_three[2].empty());
}
