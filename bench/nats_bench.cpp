// NATS JetStream: crier against raw cnats 3.4.1 on the same single node (R1, file storage),
// which the benchmark starts itself on a free loopback port with a temporary store.
//   BM_NatsPublish/crier      publish_batch of 256 events (~100-byte payloads), acknowledged
//   BM_NatsPublish/crier_structured  the same in structured mode (the event as one JSON
//                             document; headers content-type and Nats-Msg-Id only)
//   BM_NatsPublish/cnats_raw  256 js_PublishAsync + js_PublishAsyncComplete
//   BM_NatsPublish/cnats_raw_msg_id  the same with a Nats-Msg-Id header only (what any
//                             publisher that JetStream deduplicates sends)
//   BM_NatsPublish/cnats_raw_headers  the same with crier's headers (ce-*, content-type, Nats-Msg-Id)
//   BM_NatsPublishOne/crier   one publish, its acknowledgement awaited (latency: real time)
//   BM_NatsPublishOne/cnats_raw_headers  js_PublishMsg of a message with crier's headers
//   BM_NatsConsume/crier      a subscriber whose handler does nothing, over events stored before
//   BM_NatsConsume/cnats_raw  a pull subscription: Fetch(256), natsMsg_Ack each
//   BM_NatsConsume/cnats_raw_headers  the same over messages with crier's headers
//   BM_NatsEndToEnd/crier     publish (batches of 64) -> handled; items/s, p50/p99 latency
#include <benchmark/benchmark.h>
#include <nats/nats.h>

#include <crier/crier.hpp>
#include <crier/json.hpp>
#include <crier/nats.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "../tests/nats_server.hpp"
#include "alloc_counter.hpp"
#include "bench_events.hpp"
#include "cpu_meter.hpp"

namespace {

using bench::Handled;
using bench::Payment;
constexpr int kBatch = 256;
constexpr int kConsume = 100000;

test::NatsServer& server() {
  static test::NatsServer s;
  return s;
}

int next_stream() {
  static std::atomic<int> n{0};
  return ++n;
}

crier::nats::Options options() {
  crier::nats::Options o;
  o.servers = {server().url()};
  const std::string name = "BENCH" + std::to_string(next_stream());
  o.stream = name;
  o.subject_prefix = name;
  return o;
}

// Deletes the streams of one benchmark when it ends, so that each meets the server as the
// first did: streams of 100k messages left behind slowed the benchmarks after them (crier's
// consume by up to a third, measured 2026-12-04), and random interleaving made that noise.
void delete_streams(std::initializer_list<std::string> names) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  if (natsConnection_ConnectTo(&nc, server().url().c_str()) == NATS_OK &&
      natsConnection_JetStream(&js, nc, nullptr) == NATS_OK)
    for (const auto& name : names) js_DeleteStream(js, name.c_str(), nullptr, nullptr);  // absent ones: no matter
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

// The streams a bus on stream `name` makes: its own, its dead letters', its attempts'.
struct BusStreamsDeleted {
  std::string name;
  ~BusStreamsDeleted() { delete_streams({name, name + "_DLQ", name + "_ATTEMPTS"}); }
};

// Raw cnats: a connection, a JetStream context and a stream of its own.
struct Raw {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  std::string stream, subject;
  Raw() {
    const int n = next_stream();
    stream = "RAW" + std::to_string(n);
    subject = "raw" + std::to_string(n) + ".payment";
    natsConnection_ConnectTo(&nc, server().url().c_str());
    jsOptions o;
    jsOptions_Init(&o);
    o.PublishAsync.MaxPending = 4096;
    natsConnection_JetStream(&js, nc, &o);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream.c_str();
    const char* subjects[] = {subject.c_str()};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    js_AddStream(&si, js, &sc, nullptr, &jerr);
    jsStreamInfo_Destroy(si);
  }
  ~Raw() {
    js_DeleteStream(js, stream.c_str(), nullptr, nullptr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  // What the messages carry besides the payload: nothing; a Nats-Msg-Id; the headers crier's
  // messages carry (CloudEvents binary mode, Nats-Msg-Id). To tell what the wire format costs
  // from what crier costs.
  enum class Headers { none, msg_id, crier };
  // A message with `headers` (not Headers::none), as a publisher that sets them sends it.
  natsMsg* message(const std::string& payload, Headers headers) const {
    natsMsg* m = nullptr;
    natsMsg_Create(&m, subject.c_str(), nullptr, payload.data(), static_cast<int>(payload.size()));
    const std::string id = crier::Uuid::v7().to_string();
    if (headers == Headers::crier) {
      natsMsgHeader_Set(m, "ce-specversion", "1.0");
      natsMsgHeader_Set(m, "ce-id", id.c_str());
      natsMsgHeader_Set(m, "ce-source", "urn:crier:bench");
      natsMsgHeader_Set(m, "ce-type", "com.example.bench.payment");
      natsMsgHeader_Set(m, "ce-time", "2026-12-03T06:00:00.123456Z");
      natsMsgHeader_Set(m, "content-type", "application/json");
    }
    natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
    return m;
  }
  void publish(int n, const std::string& payload, Headers headers) {
    for (int i = 0; i < n; ++i) {
      if (headers == Headers::none) {
        js_PublishAsync(js, subject.c_str(), payload.data(), static_cast<int>(payload.size()), nullptr);
        continue;
      }
      natsMsg* m = message(payload, headers);
      js_PublishMsgAsync(js, &m, nullptr);
      natsMsg_Destroy(m);  // a no-op unless the publish failed
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    js_PublishAsyncComplete(js, &po);
  }
};

std::string raw_payload() { return nlohmann::json(Payment{}).dump(); }

void nats_publish_crier(benchmark::State& state, crier::nats::ContentMode mode) {
  auto o = options();
  o.content_mode = mode;
  const BusStreamsDeleted deleted{o.stream};
  crier::Bus bus{crier::nats::connect(o)};
  std::vector<Payment> batch(kBatch);
  bench::CpuMeter cpu(server().pid());
  cpu.start();
  const std::uint64_t allocations_before = bench::allocations();
  for (auto _ : state) bus.publish_batch(batch);
  const auto events = static_cast<double>(state.iterations() * kBatch);
  state.counters["allocs_per_event"] = static_cast<double>(bench::allocations() - allocations_before) / events;
  cpu.stop();
  cpu.report(state, events);
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_NatsPublish_crier(benchmark::State& state) { nats_publish_crier(state, crier::nats::ContentMode::binary); }
void BM_NatsPublish_crier_structured(benchmark::State& state) {
  nats_publish_crier(state, crier::nats::ContentMode::structured);
}
BENCHMARK(BM_NatsPublish_crier)->Name("BM_NatsPublish/crier")->UseRealTime();
BENCHMARK(BM_NatsPublish_crier_structured)->Name("BM_NatsPublish/crier_structured")->UseRealTime();

void nats_publish_raw(benchmark::State& state, Raw::Headers headers) {
  Raw raw;
  const std::string payload = raw_payload();
  bench::CpuMeter cpu(server().pid());
  cpu.start();
  for (auto _ : state) raw.publish(kBatch, payload, headers);
  cpu.stop();
  cpu.report(state, static_cast<double>(state.iterations() * kBatch));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_NatsPublish_raw(benchmark::State& state) { nats_publish_raw(state, Raw::Headers::none); }
void BM_NatsPublish_raw_msg_id(benchmark::State& state) { nats_publish_raw(state, Raw::Headers::msg_id); }
void BM_NatsPublish_raw_headers(benchmark::State& state) { nats_publish_raw(state, Raw::Headers::crier); }
BENCHMARK(BM_NatsPublish_raw)->Name("BM_NatsPublish/cnats_raw")->UseRealTime();
BENCHMARK(BM_NatsPublish_raw_msg_id)->Name("BM_NatsPublish/cnats_raw_msg_id")->UseRealTime();
BENCHMARK(BM_NatsPublish_raw_headers)->Name("BM_NatsPublish/cnats_raw_headers")->UseRealTime();

// One event published and its acknowledgement awaited, as a service that publishes what one
// request did: crier's publish against cnats's synchronous js_PublishMsg of a message with
// crier's headers.
void BM_NatsPublishOne_crier(benchmark::State& state) {
  auto o = options();
  const BusStreamsDeleted deleted{o.stream};
  crier::Bus bus{crier::nats::connect(o)};
  for (auto _ : state) bus.publish(Payment{});
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NatsPublishOne_crier)->Name("BM_NatsPublishOne/crier")->UseRealTime();

void BM_NatsPublishOne_raw_headers(benchmark::State& state) {
  Raw raw;
  const std::string payload = raw_payload();
  for (auto _ : state) {
    natsMsg* m = raw.message(payload, Raw::Headers::crier);
    jsPubAck* ack = nullptr;
    if (js_PublishMsg(&ack, raw.js, m, nullptr, nullptr) != NATS_OK) state.SkipWithError("not acknowledged");
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(m);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NatsPublishOne_raw_headers)->Name("BM_NatsPublishOne/cnats_raw_headers")->UseRealTime();

// One round: kConsume events stored first, then a new subscriber name reads them all.
void BM_NatsConsume_crier(benchmark::State& state) {
  const auto o = options();
  const BusStreamsDeleted deleted{o.stream};
  crier::Bus bus{crier::nats::connect(o)};
  std::vector<Payment> batch(kBatch);
  bench::CpuMeter cpu(server().pid());
  std::uint64_t allocations = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < kConsume / kBatch; ++i) bus.publish_batch(batch);
    Handled handled;
    state.ResumeTiming();
    cpu.start();
    const std::uint64_t allocations_before = bench::allocations();
    auto sub = bus.subscribe<Payment>("reader", [&](const Payment&) { handled.add(); });
    handled.wait_for((kConsume / kBatch) * kBatch);
    allocations += bench::allocations() - allocations_before;
    cpu.stop();
    state.PauseTiming();
    sub.unsubscribe();
    state.ResumeTiming();
  }
  const auto events = static_cast<double>(state.iterations() * (kConsume / kBatch) * kBatch);
  cpu.report(state, events);
  state.counters["allocs_per_event"] = static_cast<double>(allocations) / events;
  state.SetItemsProcessed(state.iterations() * (kConsume / kBatch) * kBatch);
}
BENCHMARK(BM_NatsConsume_crier)->Name("BM_NatsConsume/crier")->UseRealTime()->Iterations(1);

void nats_consume_raw(benchmark::State& state, Raw::Headers headers) {
  Raw raw;
  const std::string payload = raw_payload();
  int round = 0;
  bench::CpuMeter cpu(server().pid());
  for (auto _ : state) {
    state.PauseTiming();
    raw.publish(kConsume, payload, headers);
    const std::string durable = "reader" + std::to_string(round++);
    natsSubscription* sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.MaxAckPending = 20000;
    state.ResumeTiming();
    cpu.start();
    js_PullSubscribe(&sub, raw.js, raw.subject.c_str(), durable.c_str(), nullptr, &so, &jerr);
    int got = 0;
    while (got < kConsume) {
      natsMsgList list{};
      if (natsSubscription_Fetch(&list, sub, kBatch, 5000, &jerr) == NATS_OK) {
        for (int i = 0; i < list.Count; ++i) natsMsg_Ack(list.Msgs[i], nullptr);
        got += list.Count;
        natsMsgList_Destroy(&list);
      }
    }
    cpu.stop();
    state.PauseTiming();
    natsSubscription_Destroy(sub);  // keeps the consumer (Unsubscribe would delete it)
    state.ResumeTiming();
  }
  cpu.report(state, static_cast<double>(state.iterations() * kConsume));
  state.SetItemsProcessed(state.iterations() * kConsume);
}
void BM_NatsConsume_raw(benchmark::State& state) { nats_consume_raw(state, Raw::Headers::none); }
void BM_NatsConsume_raw_headers(benchmark::State& state) { nats_consume_raw(state, Raw::Headers::crier); }
BENCHMARK(BM_NatsConsume_raw)->Name("BM_NatsConsume/cnats_raw")->UseRealTime()->Iterations(1);
BENCHMARK(BM_NatsConsume_raw_headers)->Name("BM_NatsConsume/cnats_raw_headers")->UseRealTime()->Iterations(1);

void BM_NatsEndToEnd_crier(benchmark::State& state) {
  const auto o = options();
  const BusStreamsDeleted deleted{o.stream};
  crier::Bus bus{crier::nats::connect(o)};
  bench::engine_end_to_end(state, bus);
}
BENCHMARK(BM_NatsEndToEnd_crier)->Name("BM_NatsEndToEnd/crier")->UseRealTime();

}  // namespace
