// Redis Streams: crier against raw hiredis 0.14 on the same redis-server (appendonly,
// appendfsync everysec), which the benchmark starts itself on a free loopback port with a
// temporary directory.
//   BM_RedisPublish/crier            publish_batch of 256 events (~100-byte payloads): XADD
//   BM_RedisPublish/crier_guarded    the same with Options::dedup_window 2 min: each event
//                                    through the idempotency guard (one Lua call per event)
//   BM_RedisPublish/hiredis_raw      256 XADD pipelined, one `data` field
//   BM_RedisPublish/hiredis_raw_fields  the same with crier's fields (ce_*, content-type, data)
//   BM_RedisPublish/crier_replicated the same with Options::replicas 1: each batch waits for a
//                                    replica (started for it, appendonly no) to confirm (WAIT)
//   BM_RedisPublishOne/crier         one publish, its reply awaited (latency: real time)
//   BM_RedisPublishOne/crier_replicated  the same, waiting for the replica
//   BM_RedisPublishOne/hiredis_raw_fields  one XADD of crier's fields, its reply awaited
//   BM_RedisConsume/crier            a subscriber whose handler does nothing, over events stored before
//   BM_RedisConsume/hiredis_raw      XREADGROUP COUNT 500 + one XACK per batch, over entries
//                                    with crier's fields
//   BM_RedisEndToEnd/crier           publish (batches of 64) -> handled; items/s, p50/p99 latency
// The publish benchmarks also say the CPU per event of client and server (client_us,
// server_us): Redis runs commands on one thread, so its share bounds the rate.
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>

#include <crier/crier.hpp>
#include <crier/json.hpp>
#include <crier/redis.hpp>

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "../tests/redis_server.hpp"
#include "bench_events.hpp"
#include "cpu_meter.hpp"

namespace {

using bench::Handled;
using bench::Payment;
constexpr int kBatch = 256;
constexpr int kConsume = 100000;
constexpr int kReadCount = 500;

test::RedisServer& server() {
  static test::RedisServer s;
  return s;
}

std::string next_prefix(const char* what) {
  static std::atomic<int> n{0};
  return std::string(what) + std::to_string(++n);
}

// Empties the server before each benchmark, so that each meets it as the first did: streams
// of 100k entries left behind grow its memory and its append-only file (which it rewrites,
// in a forked process, when it has doubled), and random interleaving made that noise.
void empty_server() {
  redisContext* c = redisConnect("127.0.0.1", server().port());
  if (c && !c->err) freeReplyObject(redisCommand(c, "FLUSHALL"));
  redisFree(c);
}

crier::redis::Options options() {
  empty_server();
  crier::redis::Options o;
  o.url = server().url();
  o.prefix = next_prefix("bench");
  return o;
}

std::string raw_payload() { return nlohmann::json(Payment{}).dump(); }

// Raw hiredis: one connection, a stream of its own.
struct Raw {
  redisContext* c = nullptr;
  std::string key = next_prefix("raw") + ":payments";
  Raw() {
    empty_server();
    c = redisConnect("127.0.0.1", server().port());
  }
  ~Raw() { redisFree(c); }
  void drain(int n) {
    for (int i = 0; i < n; ++i) {
      void* r = nullptr;
      if (redisGetReply(c, &r) == REDIS_OK) freeReplyObject(r);
    }
  }
  // `fields`: with the fields crier's entries carry (the CloudEvents mapping), to tell what
  // the format costs from what crier costs.
  void publish(int n, const std::string& payload, bool fields) {
    for (int i = 0; i < n; ++i) {
      if (!fields) {
        redisAppendCommand(c, "XADD %s * data %b", key.c_str(), payload.data(), payload.size());
        continue;
      }
      const std::string id = crier::Uuid::v7().to_string();
      redisAppendCommand(c,
                         "XADD %s * ce_specversion 1.0 ce_id %s ce_source urn:crier:bench ce_type "
                         "com.example.bench.payment ce_time 2026-12-03T06:00:00.123456Z content-type "
                         "application/json data %b",
                         key.c_str(), id.c_str(), payload.data(), payload.size());
    }
    drain(n);
  }
};

// A replica of server() for as long as it lives (the benchmarks without one stay as they were).
struct Replica {
  // Before the replica starts: server() syncs it at once, not 5 s later for more to come.
  static bool sync_at_once() {
    redisContext* c = redisConnect("127.0.0.1", server().port());
    if (c && !c->err) freeReplyObject(redisCommand(c, "CONFIG SET repl-diskless-sync-delay 0"));
    redisFree(c);
    return true;
  }
  bool configured = sync_at_once();
  test::RedisServer node{"everysec", "", "appendonly no\nreplicaof 127.0.0.1 " + std::to_string(server().port()),
                         "MASTER <-> REPLICA sync: Finished with success"};
};

enum class Publish { plain, guarded, replicated };

void publish_crier(benchmark::State& state, Publish how) {
  auto o = options();
  if (how == Publish::guarded) o.dedup_window = std::chrono::minutes(2);
  std::optional<Replica> replica;
  if (how == Publish::replicated) {
    replica.emplace();
    o.replicas = 1;
  }
  crier::Bus bus{crier::redis::connect(o)};
  if (replica) bus.publish(Payment{});  // outside the timing: the primary counts a new replica after its first ack
  std::vector<Payment> batch(kBatch);
  bench::CpuMeter cpu(server().pid());
  cpu.start();
  for (auto _ : state) bus.publish_batch(batch);
  cpu.stop();
  cpu.report(state, static_cast<double>(state.iterations() * kBatch));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_RedisPublish_crier(benchmark::State& state) { publish_crier(state, Publish::plain); }
void BM_RedisPublish_crier_guarded(benchmark::State& state) { publish_crier(state, Publish::guarded); }
void BM_RedisPublish_crier_replicated(benchmark::State& state) { publish_crier(state, Publish::replicated); }
BENCHMARK(BM_RedisPublish_crier)->Name("BM_RedisPublish/crier")->UseRealTime();
BENCHMARK(BM_RedisPublish_crier_guarded)->Name("BM_RedisPublish/crier_guarded")->UseRealTime();
BENCHMARK(BM_RedisPublish_crier_replicated)->Name("BM_RedisPublish/crier_replicated")->UseRealTime();

void publish_raw(benchmark::State& state, bool fields) {
  Raw raw;
  const std::string payload = raw_payload();
  bench::CpuMeter cpu(server().pid());
  cpu.start();
  for (auto _ : state) raw.publish(kBatch, payload, fields);
  cpu.stop();
  cpu.report(state, static_cast<double>(state.iterations() * kBatch));
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_RedisPublish_raw(benchmark::State& state) { publish_raw(state, false); }
void BM_RedisPublish_raw_fields(benchmark::State& state) { publish_raw(state, true); }
BENCHMARK(BM_RedisPublish_raw)->Name("BM_RedisPublish/hiredis_raw")->UseRealTime();
BENCHMARK(BM_RedisPublish_raw_fields)->Name("BM_RedisPublish/hiredis_raw_fields")->UseRealTime();

// One event published and its reply awaited, as a service that publishes what one request
// did: crier's publish against one XADD of crier's fields.
void publish_one_crier(benchmark::State& state, Publish how) {
  auto o = options();
  std::optional<Replica> replica;
  if (how == Publish::replicated) {
    replica.emplace();
    o.replicas = 1;
  }
  crier::Bus bus{crier::redis::connect(o)};
  if (replica) bus.publish(Payment{});  // as above
  for (auto _ : state) bus.publish(Payment{});
  state.SetItemsProcessed(state.iterations());
}
void BM_RedisPublishOne_crier(benchmark::State& state) { publish_one_crier(state, Publish::plain); }
void BM_RedisPublishOne_crier_replicated(benchmark::State& state) { publish_one_crier(state, Publish::replicated); }
BENCHMARK(BM_RedisPublishOne_crier)->Name("BM_RedisPublishOne/crier")->UseRealTime();
BENCHMARK(BM_RedisPublishOne_crier_replicated)->Name("BM_RedisPublishOne/crier_replicated")->UseRealTime();

void BM_RedisPublishOne_raw_fields(benchmark::State& state) {
  Raw raw;
  const std::string payload = raw_payload();
  for (auto _ : state) raw.publish(1, payload, true);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RedisPublishOne_raw_fields)->Name("BM_RedisPublishOne/hiredis_raw_fields")->UseRealTime();

// One round: kConsume events stored first, then a new subscriber name reads them all.
void BM_RedisConsume_crier(benchmark::State& state) {
  crier::Bus bus{crier::redis::connect(options())};
  std::vector<Payment> batch(kBatch);
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < kConsume / kBatch; ++i) bus.publish_batch(batch);
    Handled handled;
    const std::string name = "reader" + std::to_string(round++);
    state.ResumeTiming();
    auto sub = bus.subscribe<Payment>(name, [&](const Payment&) { handled.add(); });
    handled.wait_for((kConsume / kBatch) * kBatch);
    state.PauseTiming();
    sub.unsubscribe();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * (kConsume / kBatch) * kBatch);
}
BENCHMARK(BM_RedisConsume_crier)->Name("BM_RedisConsume/crier")->UseRealTime()->Iterations(1);

void BM_RedisConsume_raw(benchmark::State& state) {
  Raw raw;
  const std::string payload = raw_payload();
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    raw.publish(kConsume, payload, true);
    const std::string group = "reader" + std::to_string(round++);
    freeReplyObject(redisCommand(raw.c, "XGROUP CREATE %s %s 0", raw.key.c_str(), group.c_str()));
    state.ResumeTiming();
    int got = 0;
    while (got < kConsume) {
      auto* r = static_cast<redisReply*>(redisCommand(raw.c, "XREADGROUP GROUP %s c1 COUNT %d STREAMS %s >",
                                                      group.c_str(), kReadCount, raw.key.c_str()));
      if (r == nullptr) break;
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        const redisReply* entries = r->element[0]->element[1];
        std::vector<const char*> argv = {"XACK", raw.key.c_str(), group.c_str()};
        for (std::size_t i = 0; i < entries->elements; ++i) argv.push_back(entries->element[i]->element[0]->str);
        freeReplyObject(redisCommandArgv(raw.c, static_cast<int>(argv.size()), argv.data(), nullptr));
        got += static_cast<int>(entries->elements);
      }
      freeReplyObject(r);
    }
  }
  state.SetItemsProcessed(state.iterations() * kConsume);
}
BENCHMARK(BM_RedisConsume_raw)->Name("BM_RedisConsume/hiredis_raw")->UseRealTime()->Iterations(1);

void BM_RedisEndToEnd_crier(benchmark::State& state) {
  crier::Bus bus{crier::redis::connect(options())};
  bench::engine_end_to_end(state, bus);
}
BENCHMARK(BM_RedisEndToEnd_crier)->Name("BM_RedisEndToEnd/crier")->UseRealTime();

}  // namespace
