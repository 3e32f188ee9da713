// The process the crash test kills. `crash_child DB DIR run N`: subscribes four subscribers
// and publishes numbered events from four threads until it is killed; `crash_child DB DIR
// drain`: subscribes the same four and exits once nothing is left to deliver. The store's
// durability level is normal, or full when $CRIER_CRASH_DURABILITY is "full".
//
// It keeps its own record in DIR, one 32-byte write(2) per line so that a kill never leaves
// half a line: attempted.log (before each publish), acked.log (after publish returned), and
// handled-<subscriber>.log (each handler call). Its stdout says "ready" once it publishes and
// "acknowledged" once the first publish returned.
#include <fcntl.h>
#include <unistd.h>

#include <crier/crier.hpp>
#include <crier/sqlite.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Numbered {
  long long n = 0;
};
CRIER_EVENT(Numbered, "com.example.crash.numbered");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Numbered, n)

class Log {
 public:
  explicit Log(const std::string& path) : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644)) {
    if (fd_ < 0) {
      std::perror(path.c_str());
      std::exit(2);
    }
  }
  // Every line is 32 bytes, so that no line straddles a page of the file: a kill can cut a
  // write short only between pages, and a torn line would run into the next one.
  void line(long long n) const {
    char buf[33];
    std::snprintf(buf, sizeof buf, "%031lld\n", n);
    if (::write(fd_, buf, 32) != 32) std::exit(2);
  }

 private:
  int fd_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: crash_child DB DIR run N | crash_child DB DIR drain\n");
    return 2;
  }
  const std::string db = argv[1], dir = argv[2], mode = argv[3];
  // The default lease (30 s): a killed child's claims are taken over because its process is
  // gone, not because the lease ran out.
  crier::sqlite::Options options;
  const char* level = std::getenv("CRIER_CRASH_DURABILITY");
  if (level != nullptr && std::string(level) == "full") options.durability = crier::sqlite::Durability::full;
  auto store = crier::sqlite::open(db, options);
  crier::Bus bus{store};

  const Log alpha(dir + "/handled-alpha.log"), beta(dir + "/handled-beta.log"), gamma(dir + "/handled-gamma.log"),
      delta(dir + "/handled-delta.log");
  crier::SubscribeOptions plain;
  auto a = bus.subscribe<Numbered>(
      "alpha", [&](const Numbered& e) { alpha.line(e.n); }, plain);
  // beta fails the first attempt of every seventh event: its retries live in the store.
  crier::SubscribeOptions retrying;
  retrying.retry.max_attempts = 1000;
  retrying.retry.initial_delay = std::chrono::milliseconds(2);
  retrying.retry.max_delay = std::chrono::milliseconds(20);
  auto b = bus.subscribe<Numbered>(
      "beta",
      [&](const Numbered& e, crier::Delivery& d) {
        if (e.n % 7 == 0 && d.attempt() == 1) throw std::runtime_error("first attempts of every seventh event fail");
        beta.line(e.n);
      },
      retrying);
  crier::SubscribeOptions parallel;
  parallel.concurrency = 2;
  auto c = bus.subscribe<Numbered>(
      "gamma", [&](const Numbered& e) { gamma.line(e.n); }, parallel);
  // delta keeps per-key order (the key is the publishing thread) and fails the first attempt
  // of every fifth event: later events of its key wait behind it, across kills too.
  crier::SubscribeOptions ordered = retrying;
  ordered.ordering = crier::Ordering::ordered;
  auto d = bus.subscribe<Numbered>(
      "delta",
      [&](const Numbered& e, crier::Delivery& dl) {
        if (e.n % 5 == 0 && dl.attempt() == 1) throw std::runtime_error("first attempts of every fifth event fail");
        delta.line(e.n);
      },
      ordered);

  if (mode == "drain") {
    // Until every event is delivered and nothing is held. The long mode leaves millions of
    // events behind (publishers outrun the subscribers), so give up only after half an hour.
    for (int i = 0; i < 18000; ++i) {
      const bool quiet = bus.flush(std::chrono::milliseconds(100));
      if (quiet && store->stats().in_flight == 0 && bus.flush(std::chrono::milliseconds(100))) return 0;
    }
    std::fprintf(stderr, "crash_child: still not drained after half an hour\n");
    return 3;
  }

  const long long run = std::atoll(argv[4]);
  const Log attempted(dir + "/attempted.log"), acked(dir + "/acked.log");
  std::printf("ready\n");
  std::fflush(stdout);
  std::atomic<bool> said_acknowledged{false};  // a second line, once the first publish returned
  std::vector<std::thread> publishers;
  for (long long t = 0; t < 4; ++t)
    publishers.emplace_back([&, t] {
      crier::Attributes key;
      key.partition_key = "t" + std::to_string(t);
      for (long long i = 0;; ++i) {
        const long long n = run * 100'000'000 + t * 10'000'000 + i;
        attempted.line(n);
        bus.publish(Numbered{n}, key);
        acked.line(n);
        if (!said_acknowledged.exchange(true)) {
          std::printf("acknowledged\n");
          std::fflush(stdout);
        }
      }
    });
  for (auto& p : publishers) p.join();
}
