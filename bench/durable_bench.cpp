// Durable publish on the SQLite store, against raw SQLite writing the same columns.
//
// BM_DurablePublish/<impl>/<threads>: events per second that publish acknowledged.
//   crier_normal, crier_full: crier::Bus on crier::sqlite at Durability::normal / full, from
//     1, 8 and 64 threads publishing at once (they share the journal and its fdatasync rounds).
//   sqlite_raw_batched/1: one thread, prepared INSERTs of the envelope columns, one
//     transaction per 1,000 rows, WAL, synchronous=NORMAL: a ceiling without fsync.
//   sqlite_raw_per_row/1: the same, one transaction per row, synchronous=FULL: what a naive
//     durable publish costs.
// BM_DurableEndToEnd/crier_normal: publish -> handled by one subscriber; items_per_second and
//   p50/p99 latency (publish call to handler start, microseconds).
//
// BM_DurableWakeup/cross_process: a subscriber in another process (forked), events published
//   one every 200 us; p50/p99 of publish call -> handler start, microseconds (the steady
//   clock is shared by the processes). The subscriber learns of other processes' commits by
//   polling the file's data_version every millisecond.
//
// Files go to $CRIER_BENCH_DIR (default: the current directory), on the disk being measured.
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <crier/sqlite.hpp>

#include "bench_events.hpp"

namespace {

using bench::Tick;
using Clock = std::chrono::steady_clock;

// A fresh directory for one benchmark's files, removed afterwards.
class BenchDir {
 public:
  BenchDir() {
    const char* base = std::getenv("CRIER_BENCH_DIR");
    std::string pattern = (std::filesystem::path(base ? base : ".") / "crier-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed in " + pattern);
    path_ = pattern;
  }
  ~BenchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const char* name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void durable_publish(benchmark::State& state, crier::sqlite::Durability level, int threads) {
  BenchDir dir;
  crier::sqlite::Options options;
  options.durability = level;
  crier::Bus bus{crier::sqlite::open(dir.file("bench.db"), options)};
  const std::int64_t per_thread = (level == crier::sqlite::Durability::full ? 16'000 : 64'000) / threads;
  std::int64_t total = 0;
  for (auto _ : state) {
    std::vector<std::thread> publishers;
    for (int t = 0; t < threads; ++t)
      publishers.emplace_back([&bus, per_thread] {
        for (std::int64_t i = 0; i < per_thread; ++i) bus.publish(Tick{i});
      });
    for (auto& p : publishers) p.join();
    total += per_thread * threads;
  }
  state.SetItemsProcessed(total);
}

// The crier schema's events table, written directly.
void raw_sqlite(benchmark::State& state, bool batched) {
  BenchDir dir;
  const std::string path = dir.file("raw.db");
  crier::sqlite::open(path);  // creates the same schema
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db,
               batched ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
                       : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO crier_events (id, type, source, time, datacontenttype, dataschema, subject, "
                     "extensions, data, stored_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                     -1, &insert, nullptr);
  const std::string id = crier::Uuid::v7().to_string(), type = "com.example.bench.tick", source = "/crier/bench/1",
                    time = "2026-11-27T09:00:00.000000Z", content = "application/json",
                    extensions = "{\"correlationid\":\"" + id + "\"}", data = "{\"value\":1}";
  const std::int64_t rows = batched ? 100'000 : 2'000;
  const std::int64_t per_tx = batched ? 1000 : 1;
  std::int64_t total = 0;
  for (auto _ : state) {
    for (std::int64_t i = 0; i < rows; i += per_tx) {
      sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
      for (std::int64_t k = 0; k < per_tx; ++k) {
        sqlite3_bind_text(insert, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert, 2, type.data(), static_cast<int>(type.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert, 3, source.data(), static_cast<int>(source.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert, 4, time.data(), static_cast<int>(time.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert, 5, content.data(), static_cast<int>(content.size()), SQLITE_STATIC);
        sqlite3_bind_text(insert, 6, "", 0, SQLITE_STATIC);
        sqlite3_bind_text(insert, 7, "", 0, SQLITE_STATIC);
        sqlite3_bind_text(insert, 8, extensions.data(), static_cast<int>(extensions.size()), SQLITE_STATIC);
        sqlite3_bind_blob(insert, 9, data.data(), static_cast<int>(data.size()), SQLITE_STATIC);
        sqlite3_bind_int64(insert, 10, i + k);
        if (sqlite3_step(insert) != SQLITE_DONE) state.SkipWithError(sqlite3_errmsg(db));
        sqlite3_reset(insert);
      }
      sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    }
    total += rows;
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  state.SetItemsProcessed(total);
}

// Publish -> handler start, through the file. Latency is measured from the publish call of
// each event (its time rides in the event) to the moment its handler starts.
struct Stamped {
  std::int64_t sent_ns = 0;
};
CRIER_EVENT(Stamped, "com.example.bench.stamped");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Stamped, sent_ns)

void durable_end_to_end(benchmark::State& state) {
  BenchDir dir;
  crier::Bus bus{crier::sqlite::open(dir.file("e2e.db"))};
  constexpr std::int64_t kEvents = 50'000;
  std::mutex mu;
  std::vector<std::int64_t> latencies;
  latencies.reserve(static_cast<std::size_t>(kEvents) * 4);
  std::int64_t handled = 0, target = 0;  // guarded by mu
  std::condition_variable all_handled;
  auto sub = bus.subscribe<Stamped>("consumer", [&](const Stamped& s) {
    const std::int64_t now = Clock::now().time_since_epoch().count();
    std::lock_guard lock(mu);
    latencies.push_back(now - s.sent_ns);
    if (++handled == target) all_handled.notify_one();
  });
  for (auto _ : state) {
    {
      std::lock_guard lock(mu);
      target += kEvents;
    }
    // Two publishing threads; the subscriber reads behind them.
    std::vector<std::thread> publishers;
    for (int t = 0; t < 2; ++t)
      publishers.emplace_back([&bus] {
        for (std::int64_t i = 0; i < kEvents / 2; ++i) bus.publish(Stamped{Clock::now().time_since_epoch().count()});
      });
    for (auto& p : publishers) p.join();
    std::unique_lock lock(mu);  // not a spin: the two cores belong to the publishers and the subscriber
    all_handled.wait(lock, [&] { return handled >= target; });
  }
  std::lock_guard lock(mu);
  state.SetItemsProcessed(target);
  std::sort(latencies.begin(), latencies.end());
  auto at = [&](double q) {
    return latencies.empty()
               ? 0.0
               : static_cast<double>(latencies[static_cast<std::size_t>(q * (latencies.size() - 1))]) / 1e3;
  };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
}

double quantile_us(std::vector<std::int64_t>& ns, double q) {
  if (ns.empty()) return 0;
  std::sort(ns.begin(), ns.end());
  return static_cast<double>(ns[static_cast<std::size_t>(q * static_cast<double>(ns.size() - 1))]) / 1e3;
}

void durable_wakeup_cross_process(benchmark::State& state) {
  constexpr int kEvents = 2000;
  std::vector<std::int64_t> latencies;
  for (auto _ : state) {
    BenchDir dir;
    const std::string db = dir.file("wakeup.db"), out = dir.file("latencies");
    crier::sqlite::open(db);  // the schema exists before either side starts
    int ready[2];
    if (pipe(ready) != 0) state.SkipWithError("pipe failed");
    const pid_t child = fork();
    if (child == 0) {  // the subscribing process
      close(ready[0]);
      std::vector<std::int64_t> seen;
      seen.reserve(kEvents);
      {
        crier::Bus bus{crier::sqlite::open(db)};
        std::mutex mu;
        std::condition_variable cv;
        auto sub = bus.subscribe<Stamped>("remote", [&](const Stamped& s) {
          const std::int64_t now = Clock::now().time_since_epoch().count();
          std::lock_guard lock(mu);
          seen.push_back(now - s.sent_ns);
          cv.notify_all();
        });
        if (write(ready[1], "r", 1) != 1) _exit(2);
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return seen.size() >= kEvents; });
      }
      FILE* f = std::fopen(out.c_str(), "w");
      for (std::int64_t v : seen) std::fprintf(f, "%lld\n", static_cast<long long>(v));
      std::fclose(f);
      _exit(0);
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) state.SkipWithError("the subscribing process did not start");
    close(ready[0]);
    {
      crier::Bus bus{crier::sqlite::open(db)};
      for (int i = 0; i < kEvents; ++i) {
        bus.publish(Stamped{Clock::now().time_since_epoch().count()});
        std::this_thread::sleep_for(std::chrono::microseconds(200));  // the pace of the experiment
      }
      int status = 0;
      waitpid(child, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) state.SkipWithError("the subscribing process failed");
    }
    FILE* f = std::fopen(out.c_str(), "r");
    long long v;
    while (f && std::fscanf(f, "%lld", &v) == 1) latencies.push_back(v);
    if (f) std::fclose(f);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(latencies.size()));
  state.counters["p50_us"] = quantile_us(latencies, 0.50);
  state.counters["p99_us"] = quantile_us(latencies, 0.99);
}

const int kRegistered = [] {
  using crier::sqlite::Durability;
  for (int threads : {1, 8, 64})
    benchmark::RegisterBenchmark(("BM_DurablePublish/crier_normal/" + std::to_string(threads)).c_str(), durable_publish,
                                 Durability::normal, threads)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  for (int threads : {1, 8, 64})
    benchmark::RegisterBenchmark(("BM_DurablePublish/crier_full/" + std::to_string(threads)).c_str(), durable_publish,
                                 Durability::full, threads)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_DurablePublish/sqlite_raw_batched/1", raw_sqlite, true)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_DurablePublish/sqlite_raw_per_row/1", raw_sqlite, false)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_DurableEndToEnd/crier_normal", durable_end_to_end)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_DurableWakeup/cross_process", durable_wakeup_cross_process)
      ->UseRealTime()
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  return 0;
}();

}  // namespace
