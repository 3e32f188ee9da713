// The canonical crier story.
//
// An order service places orders and publishes OrderPlaced. Inventory, Email and Audit
// subscribe; the order service knows none of them. For the first part of the run Inventory's
// database is down: its handler throws. Placing orders still succeeds and Email and Audit see
// every order. Inventory's events are retried with back-off; after repeated failures its
// circuit breaker opens and its backlog waits instead of burning attempts; a probe finds the
// database back, the breaker closes and Inventory catches up. A few "poison" orders (a
// discontinued product) can never succeed: they go to the dead letters, with the reason.
//
// Events live in a SQLite file (--store, default orders.db): kill the demo at any moment
// (kill -9 included) and run it again, and every order placed before the kill still reaches
// every service; the summary says how many came from the earlier run. --memory runs the same
// story on the in-process bus; --nats URL[,URL...] runs it across hosts on NATS JetStream
// (stream ORDERS; scripts/nats-server starts a local node), --redis URL on Redis Streams (keys
// orders:*; scripts/redis-server starts a local server).
//
// --role runs one part of the story as its own process, over a store every process reaches
// (NATS, Redis, or the same SQLite file): `--role orders` places the orders and exits once they are
// stored; `--role inventory|email|audit` is that one service, which handles orders until it
// has finished N of them (--orders N, 0: until Ctrl-C) and then prints its line. Processes of
// one service share its orders, each finishing a part: run those with --orders 0.
//
//   orders [--orders N] [--outage-ms N] [--store FILE | --memory | --nats URLS | --redis URL]
//          [--metrics-out FILE]
//          [--role all|orders|inventory|email|audit]
#include <crier/crier.hpp>
#include <crier/nats.hpp>
#include <crier/open.hpp>
#include <crier/redis.hpp>
#include <crier/sqlite.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace shop {

// --- the event: a plain value type with a stable name ---------------------------------------
struct OrderPlaced {
  std::string order_id;
  std::string customer;
  std::string sku;
  int quantity = 0;
  long total_cents = 0;
};
CRIER_EVENT(OrderPlaced, "com.example.shop.order.placed");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(OrderPlaced, order_id, customer, sku, quantity, total_cents)

// --- the publisher ---------------------------------------------------------------------------
class OrderService {
 public:
  explicit OrderService(crier::Bus& bus) : bus_(bus) {}

  // Places an order. Succeeds whatever state the subscribers are in.
  std::string place(std::string customer, std::string sku, int quantity, long unit_cents) {
    std::string id = "o-" + std::to_string(++next_);
    crier::Attributes attrs;
    attrs.subject = id;
    attrs.partition_key = customer;
    bus_.publish(OrderPlaced{id, std::move(customer), std::move(sku), quantity, quantity * unit_cents}, attrs);
    return id;
  }

 private:
  crier::Bus& bus_;
  long next_ = 0;
};

// --- the subscribers -------------------------------------------------------------------------
class Inventory {
 public:
  // The database is unreachable until `back_at`.
  explicit Inventory(std::chrono::steady_clock::time_point back_at) : back_at_(back_at) {}

  void reserve(const OrderPlaced& order) {
    if (order.sku == "discontinued") throw crier::PermanentError("sku 'discontinued' is no longer sold");
    if (std::chrono::steady_clock::now() < back_at_) throw std::runtime_error("inventory database unreachable");
    std::lock_guard lock(mu_);
    stock_[order.sku] -= order.quantity;
  }

  long reserved_units() {
    std::lock_guard lock(mu_);
    long total = 0;
    for (const auto& [sku, delta] : stock_) total -= delta;
    return total;
  }

 private:
  const std::chrono::steady_clock::time_point back_at_;
  std::mutex mu_;
  std::map<std::string, long> stock_;
};

// Counts deliveries of orders placed before this run started: left over by an earlier run
// that was stopped or killed.
class Leftovers {
 public:
  explicit Leftovers(crier::Timestamp run_started) : run_started_(run_started) {}
  void see(const crier::Delivery& d) {
    if (d.time() < run_started_) n_.fetch_add(1, std::memory_order_relaxed);
  }
  long count() const { return n_.load(); }

 private:
  const crier::Timestamp run_started_;
  std::atomic<long> n_{0};
};

class Email {
 public:
  void send_confirmation(const OrderPlaced& order) {
    // A real service would render and queue a message; we count what we would send.
    sent_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(order.customer.size() + order.order_id.size() + 64, std::memory_order_relaxed);
  }
  long sent() const { return sent_.load(); }

 private:
  std::atomic<long> sent_{0};
  std::atomic<long> bytes_{0};
};

class Audit {
 public:
  // Audit wants the CloudEvents context: which event, when, in which chain.
  void record(const OrderPlaced& order, crier::Delivery& d) {
    std::lock_guard lock(mu_);
    if (first_.empty()) first_ = d.id().to_string() + "  " + std::string(d.type()) + "  subject=" + order.order_id;
    ++entries_;
  }
  long entries() {
    std::lock_guard lock(mu_);
    return entries_;
  }
  std::string first() {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  std::mutex mu_;
  long entries_ = 0;
  std::string first_;
};

}  // namespace shop

namespace {

long arg_value(int argc, char** argv, std::string_view name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (name == argv[i]) {
      char* end = nullptr;
      const long v = std::strtol(argv[i + 1], &end, 10);
      if (end == argv[i + 1] || *end != '\0' || v < 0) {
        std::fprintf(stderr, "orders: %s wants a non-negative number, not '%s'\n", argv[i], argv[i + 1]);
        std::exit(2);
      }
      return v;
    }
  return fallback;
}

std::string arg_text(int argc, char** argv, std::string_view name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (name == argv[i]) return argv[i + 1];
  return {};
}

// Takes this process's turn on the SQLite file `path`, the whole story alone and services
// beside each other, with an advisory lock held until the process exits (SQLite's own locks
// are another kind and do not see it). False, said on stderr, when another process's turn
// rules this one out.
bool take_turn_on(const std::string& path, bool whole_story) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // never closed: the lock lasts as long
  if (fd < 0 || ::flock(fd, (whole_story ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 || errno != EWOULDBLOCK) return true;
  if (whole_story)
    std::fprintf(stderr,
                 "orders: another orders process serves %s (a --role service or a whole demo): it would take some "
                 "of this run's orders, and this run could not count them. Wait for it to end, or give this run "
                 "its own --store FILE\n",
                 path.c_str());
  else
    std::fprintf(stderr,
                 "orders: a whole orders demo runs on %s and counts what its own services handle: wait for it to "
                 "end, or give this service its own --store FILE\n",
                 path.c_str());
  return false;
}

}  // namespace

static int run(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help") {
      std::printf(
          "usage: orders [--orders N] [--outage-ms N] [--store FILE | --memory | --nats URL[,URL...] | --redis URL] "
          "[--metrics-out FILE] [--role all|orders|inventory|email|audit]\n");
      return 0;
    }
  std::string role = arg_text(argc, argv, "--role");
  if (role.empty()) role = "all";
  if (role != "all" && role != "orders" && role != "inventory" && role != "email" && role != "audit") {
    std::fprintf(stderr, "orders: --role wants all, orders, inventory, email or audit, not '%s'\n", role.c_str());
    return 2;
  }
  const bool one_service = role != "all" && role != "orders";
  auto runs = [&](std::string_view part) { return role == "all" || role == part; };
  // A service process stops on Ctrl-C or SIGTERM: blocked here, before the bus starts its
  // threads, and waited for below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (one_service) pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  bool in_memory = false;
  for (int i = 1; i < argc; ++i) in_memory = in_memory || std::string_view(argv[i]) == "--memory";
  if (in_memory && role != "all") {
    std::fprintf(stderr,
                 "orders: --role needs a store every process reaches (--nats, --redis or --store), not --memory\n");
    return 2;
  }
  std::string store_path = arg_text(argc, argv, "--store");
  if (store_path.empty()) store_path = "orders.db";
  const long orders = arg_value(argc, argv, "--orders", 5000);
  const long outage_ms = arg_value(argc, argv, "--outage-ms", 300);
  const std::string metrics_out = arg_text(argc, argv, "--metrics-out");
  const std::string nats_urls = arg_text(argc, argv, "--nats");
  const std::string redis_url = arg_text(argc, argv, "--redis");
  const auto start = std::chrono::steady_clock::now();
  auto since_start = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };

  // What the bus reports: failures are counted; breaker changes make the timeline.
  std::mutex report_mu;
  std::vector<std::string> timeline;
  long failures = 0;
  long transport_problems = 0;  // the store out of reach, or refusing a write
  std::string first_transport_problem;
  crier::BusOptions options;
  options.source = "/shop/orders";
  options.on_error = [&](const crier::Report& r) {
    std::lock_guard lock(report_mu);
    switch (r.kind) {
      case crier::Report::Kind::handler_failed:
        ++failures;
        break;
      case crier::Report::Kind::transport_failed:
      case crier::Report::Kind::connection_lost:
      case crier::Report::Kind::connection_restored: {
        const std::string said =
            (r.subscriber.empty() ? "" : std::string(r.subscriber) + ": ") + std::string(r.message);
        // A service runs for as long as it is left to: what its store does is said as it
        // happens (each change once), not only when it stops.
        if (one_service) {
          std::printf("  %+8.1f ms  %s\n", since_start(), said.c_str());
          std::fflush(stdout);
        }
        if (r.kind != crier::Report::Kind::connection_restored && transport_problems++ == 0)
          first_transport_problem = said;
        break;
      }
      case crier::Report::Kind::breaker_opened:
      case crier::Report::Kind::breaker_half_open:
      case crier::Report::Kind::breaker_closed: {
        char line[256];
        std::snprintf(line, sizeof line, "  %+8.1f ms  %s: %s", since_start(), std::string(r.subscriber).c_str(),
                      std::string(r.message).c_str());
        timeline.emplace_back(line);
        break;
      }
      default:
        break;
    }
  };
  // Where events wait: a SQLite file (the default), NATS JetStream, Redis Streams, or nowhere
  // (--memory).
  std::shared_ptr<crier::Transport> store;
  std::string stored_in = store_path + " (SQLite, survives kill -9)";
  std::string tool_target = store_path;  // the bus as the crier tool names it
  try {
    if (!nats_urls.empty()) {
      crier::nats::Options o;
      o.servers.clear();
      for (std::size_t from = 0; from <= nats_urls.size();) {
        const auto comma = std::min(nats_urls.find(',', from), nats_urls.size());
        o.servers.push_back(nats_urls.substr(from, comma - from));
        from = comma + 1;
      }
      o.stream = "ORDERS";
      o.subject_prefix = "orders";
      o.publish_timeout = std::chrono::seconds(10);
      store = crier::nats::connect(o);
      stored_in = "NATS JetStream stream ORDERS at " + crier::redacted_target(nats_urls);  // no password
      std::string first = o.servers.front();
      while (!first.empty() && first.back() == '/') first.pop_back();
      tool_target = first + "/ORDERS";
    } else if (!redis_url.empty()) {
      crier::redis::Options o;
      o.url = redis_url;
      o.prefix = "orders";
      o.timeout = std::chrono::seconds(10);
      store = crier::redis::connect(o);
      stored_in = "Redis Streams orders:* at " + crier::redacted_target(redis_url);
      tool_target = redis_url + (redis_url.find('?') == std::string::npos ? "?" : "&") + "prefix=orders";
    } else if (!in_memory) {
      store = crier::sqlite::open(store_path);
    }
  } catch (const crier::Error& e) {
    std::fprintf(stderr, "orders: %s\n", e.what());
    return 2;
  }
  const bool on_file = store && nats_urls.empty() && redis_url.empty();
  if (on_file && role != "orders" && !take_turn_on(store_path, role == "all")) return 2;
  // What a subscriber has not finished, wherever it waits (every transport's inspector).
  auto waiting = [&](const std::string& name, std::string_view type) -> long {
    for (const auto& s : store->inspector().subscribers())
      if (s.subscriber == name && s.event_type == type) return static_cast<long>(s.lag);
    return 0;
  };
  crier::Bus bus = store ? crier::Bus(store, options) : crier::Bus(options);
  const crier::Timestamp run_started = std::chrono::system_clock::now();
  std::map<std::string, std::unique_ptr<shop::Leftovers>> leftovers;
  for (const char* name : {"inventory", "email", "audit"})
    leftovers[name] = std::make_unique<shop::Leftovers>(run_started);

  shop::Inventory inventory(start + std::chrono::milliseconds(outage_ms));
  shop::Email email;
  shop::Audit audit;

  // Inventory: retried with back-off (up to 10 attempts, 20 ms doubling to at most 400 ms,
  // with jitter); a breaker opens after 5 consecutive failures and probes every 100 ms.
  crier::SubscribeOptions resilient;
  resilient.retry.max_attempts = 10;
  resilient.retry.initial_delay = std::chrono::milliseconds(20);
  resilient.retry.max_delay = std::chrono::milliseconds(400);
  resilient.breaker.consecutive_failures = 5;
  resilient.breaker.cooldown = std::chrono::milliseconds(100);
  crier::Subscription s1, s2, s3, s4;
  if (runs("inventory"))
    s1 = bus.subscribe<shop::OrderPlaced>(
        "inventory",
        [&](const shop::OrderPlaced& o, crier::Delivery& d) {
          inventory.reserve(o);
          leftovers["inventory"]->see(d);
        },
        resilient);
  if (runs("email"))
    s2 = bus.subscribe<shop::OrderPlaced>("email", [&](const shop::OrderPlaced& o, crier::Delivery& d) {
      email.send_confirmation(o);
      leftovers["email"]->see(d);
    });
  if (runs("audit"))
    s3 = bus.subscribe<shop::OrderPlaced>("audit", [&](const shop::OrderPlaced& o, crier::Delivery& d) {
      audit.record(o, d);
      leftovers["audit"]->see(d);
    });
  // Operations hears about every dead letter as it happens.
  std::atomic<long> alerts{0};
  if (runs("inventory"))
    s4 = bus.subscribe<crier::DeadLettered>("ops-alerts", [&](const crier::DeadLettered&) { alerts.fetch_add(1); });

  long placed = 0;
  if (runs("orders")) {
    shop::OrderService service(bus);
    const char* skus[] = {"kettle", "teapot", "mug", "strainer"};
    for (long i = 1; i <= orders; ++i) {
      const char* sku = i % 1000 == 0 ? "discontinued" : skus[i % 4];  // a poison order now and then
      try {
        service.place("customer-" + std::to_string(i % 97), sku, 1 + static_cast<int>(i % 3), 1250);
      } catch (const crier::Error& e) {  // not stored (the store out of reach past its timeout)
        std::fprintf(stderr, "orders: order o-%ld was not placed: %s\n", i, e.what());
        if (placed > 0) std::fprintf(stderr, "  the %ld orders placed before it are stored\n", placed);
        return 1;
      }
      ++placed;
    }
  }
  if (one_service) {
    // Orders the service finished (handled or dead-lettered), whenever they were placed.
    auto finished = [&] {
      for (const auto& s : bus.metrics().subscribers)
        if (s.name == role && s.event_type == crier::event_type_v<shop::OrderPlaced>)
          return static_cast<long>(s.delivered + s.dead_lettered);
      return 0L;
    };
    std::printf("%s: handling orders from %s until %s\n", role.c_str(), stored_in.c_str(),
                orders > 0 ? (std::to_string(orders) + " are finished, or Ctrl-C").c_str() : "Ctrl-C");
    std::fflush(stdout);
    for (;;) {  // wakes for a signal, or to look at the count
      const timespec look_every{0, 200'000'000};
      const int sig = sigtimedwait(&stop_signals, nullptr, &look_every);
      if (sig == SIGINT || sig == SIGTERM || (orders > 0 && finished() >= orders)) break;
    }
  }
  const double placing_ms = since_start();
  const crier::DrainResult drained = bus.drain(std::chrono::seconds(30));
  const double done_ms = since_start();

  if (role == "orders") {  // the services run elsewhere: stored is all this process promises
    std::printf("crier orders demo, order service: %ld orders placed and stored in %.1f ms in %s\n", placed, done_ms,
                stored_in.c_str());
    return 0;
  }
  if (one_service)
    std::printf(
        "crier orders demo, %s service: stopped after %.0f ms; of its orders, %ld were placed before it started\n",
        role.c_str(), done_ms, leftovers[role]->count());
  else
    std::printf(
        "crier orders demo: %ld orders placed in %.1f ms while inventory's database was down for %ld ms;\n"
        "%s after %.0f ms\n",
        placed, placing_ms, outage_ms,
        drained.complete ? "every event handled or dead-lettered"
                         : "the drain deadline passed with events not yet handled (below)",
        done_ms);
  if (!one_service && store)
    std::printf(
        "events stored in %s; delivered this run from an earlier run: "
        "inventory %ld, email %ld, audit %ld\n",
        stored_in.c_str(), leftovers["inventory"]->count(), leftovers["email"]->count(), leftovers["audit"]->count());
  else if (!one_service)
    std::printf("events kept in memory (--memory)\n");
  std::printf("\n");
  std::printf("  %-10s %9s %7s %8s %6s %13s %10s\n", "subscriber", "delivered", "failed", "retried", "dead",
              "breaker opens", "handler ms");
  std::printf("  %-10s %9s %7s %8s %6s %13s %10s\n", "----------", "---------", "------", "-------", "----",
              "-------------", "----------");
  const crier::MetricsSnapshot metrics = bus.metrics();
  for (const auto& s : metrics.subscribers) {
    if (s.event_type != crier::event_type_v<shop::OrderPlaced>) continue;
    std::printf("  %-10s %9llu %7llu %8llu %6llu %13llu %10.2f\n", s.name.c_str(),
                static_cast<unsigned long long>(s.delivered), static_cast<unsigned long long>(s.failed),
                static_cast<unsigned long long>(s.retried), static_cast<unsigned long long>(s.dead_lettered),
                static_cast<unsigned long long>(s.breaker_opened),
                std::chrono::duration<double, std::milli>(s.handler_time).count());
  }
  if (runs("inventory")) {
    std::printf("\n  inventory's circuit breaker:\n");
    for (const auto& line : timeline) std::printf("%s\n", line.c_str());
    const auto letters = bus.dead_letters();
    std::printf("\n  dead letters%s: %zu (this run published %ld alerts as %s)%s\n",
                in_memory ? "" : " kept, earlier runs' included", letters.size(), alerts.load(),
                std::string(crier::event_type_v<crier::DeadLettered>).c_str(), letters.empty() ? "" : ":");
    for (std::size_t i = 0; i < letters.size() && i < 5; ++i)
      std::printf("    #%llu %s %s: %s (%d attempt%s)\n", static_cast<unsigned long long>(letters[i].id),
                  letters[i].subscriber.c_str(), letters[i].envelope.subject.c_str(), letters[i].last_error.c_str(),
                  letters[i].attempts, letters[i].attempts == 1 ? "" : "s");
    if (letters.size() > 5) std::printf("    ...\n");
  }
  if (runs("audit")) std::printf("\n  audit's first entry: %s\n", audit.first().c_str());
  {
    std::lock_guard lock(report_mu);
    if (transport_problems > 0)
      std::printf("\n  the store reported %ld problem%s; the first:\n    %s\n", transport_problems,
                  transport_problems == 1 ? "" : "s", first_transport_problem.c_str());
  }
  std::printf("\n");
  if (runs("inventory")) std::printf("  inventory reserved %ld units\n", inventory.reserved_units());
  if (runs("email")) std::printf("  email sent %ld confirmations\n", email.sent());
  if (runs("audit")) std::printf("  audit holds %ld entries\n", audit.entries());

  if (!metrics_out.empty()) {
    std::FILE* f = std::fopen(metrics_out.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "orders: cannot write metrics to %s: %s\n", metrics_out.c_str(), std::strerror(errno));
      return 2;
    }
    const std::string text = crier::to_prometheus(metrics);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    std::printf("  metrics written to %s (Prometheus text format)\n", metrics_out.c_str());
  }

  if (one_service) {
    std::printf("\n%s stopped; what it has not finished waits in the store for the next %s process\n", role.c_str(),
                role.c_str());
    return 0;
  }
  // Every order placed this run reached every service, was dead-lettered, or (with a store)
  // waits in the store for the next run. Only an order that is none of these is lost.
  bool ok = true;
  std::uint64_t dead_this_run = 0;
  if (!drained.complete) {
    if (store) {
      std::printf(
          "\n  %zu events wait in %s for their subscribers (the drain deadline passed); nothing is lost:\n"
          "  run again (--orders 0) and they are delivered\n",
          drained.undelivered, stored_in.c_str());
    } else {
      std::printf("\n  drain left %zu events undelivered in memory; they are lost with the process\n",
                  drained.undelivered);
      ok = false;
    }
  }
  for (const auto& s : metrics.subscribers) {
    if (s.event_type != crier::event_type_v<shop::OrderPlaced>) continue;
    const long this_run = static_cast<long>(s.delivered) - leftovers[s.name]->count();
    const long left = store ? waiting(s.name, s.event_type) : 0;
    dead_this_run += s.dead_lettered;
    const long missing = placed - this_run - static_cast<long>(s.dead_lettered) - left;
    if (missing > 0) {
      std::printf("\n  %s: %ld orders of this run were neither handled, dead-lettered nor waiting\n", s.name.c_str(),
                  missing);
      ok = false;
    }
  }
  if (!ok)
    std::printf("\nSOMETHING WAS LOST: see above\n");
  else if (drained.complete)
    std::printf("\nevery order placed; email and audit saw every one; inventory caught up after its outage%s\n",
                dead_this_run > 0 ? ", and the orders it can never handle wait in its dead letters" : "");
  else
    std::printf("\nevery order placed is handled or waits in the store\n");
  if (store)
    std::printf("look at the bus with the crier tool: crier status '%s' (and crier tail, crier dlq list)\n",
                crier::redacted_target(tool_target).c_str());
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  // A store that fails under the running demo (out of reach past its timeout while the
  // summary is gathered, say) ends it with the reason, not with std::terminate.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "orders: %s\n", e.what());
    return 1;
  }
}
