// The canonical crier story.
//
// An order service places orders and publishes OrderPlaced. Inventory, Email and Audit
// subscribe; the order service knows none of them. For the first part of the run Inventory
// is down: its handler throws. Placing orders still succeeds, Email and Audit still see
// every order, and Inventory's failures stay Inventory's: counted and reported, never the
// order service's problem.
//
//   orders [--orders N] [--down-for N]
#include <crier/crier.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
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
  // Inventory's database is unreachable for its first `outage` requests.
  explicit Inventory(long outage) : outage_(outage) {}

  void reserve(const OrderPlaced& order) {
    std::lock_guard lock(mu_);
    if (requests_++ < outage_) throw std::runtime_error("inventory database unreachable");
    stock_[order.sku] -= order.quantity;
  }

  long reserved_units() {
    std::lock_guard lock(mu_);
    long total = 0;
    for (const auto& [sku, delta] : stock_) total -= delta;
    return total;
  }

 private:
  const long outage_;
  long requests_ = 0;
  std::mutex mu_;
  std::map<std::string, long> stock_;
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

}  // namespace

int main(int argc, char** argv) {
  const long orders = arg_value(argc, argv, "--orders", 5000);
  const long down_for = std::min(arg_value(argc, argv, "--down-for", orders * 2 / 5), orders);

  // Failures are the subscribers' business; we keep the first few reports to show them.
  std::mutex report_mu;
  std::vector<std::string> reports;
  long reports_total = 0;
  crier::BusOptions options;
  options.source = "/shop/orders";
  options.on_error = [&](const crier::Report& r) {
    if (r.kind != crier::Report::Kind::handler_failed) return;
    std::lock_guard lock(report_mu);
    if (++reports_total <= 3)
      reports.push_back(std::string(r.subscriber) + ": " + std::string(r.message) + " (" + std::string(r.event_type) + ")");
  };
  crier::Bus bus(options);

  shop::Inventory inventory(down_for);
  shop::Email email;
  shop::Audit audit;
  auto s1 = bus.subscribe<shop::OrderPlaced>("inventory", [&](const shop::OrderPlaced& o) { inventory.reserve(o); });
  auto s2 = bus.subscribe<shop::OrderPlaced>("email", [&](const shop::OrderPlaced& o) { email.send_confirmation(o); });
  auto s3 = bus.subscribe<shop::OrderPlaced>("audit",
                                             [&](const shop::OrderPlaced& o, crier::Delivery& d) { audit.record(o, d); });

  shop::OrderService service(bus);
  const char* skus[] = {"kettle", "teapot", "mug", "strainer"};
  const auto start = std::chrono::steady_clock::now();
  long placed = 0;
  for (long i = 0; i < orders; ++i) {
    service.place("customer-" + std::to_string(i % 97), skus[i % 4], 1 + static_cast<int>(i % 3), 1250);
    ++placed;
  }
  const auto placing = std::chrono::steady_clock::now() - start;
  const crier::DrainResult drained = bus.drain(std::chrono::seconds(30));

  std::printf("crier orders demo: %ld orders placed in %.1f ms; inventory was down for its first %ld\n\n", placed,
              std::chrono::duration<double, std::milli>(placing).count(), down_for);
  std::printf("  %-10s %10s %8s %12s\n", "subscriber", "delivered", "failed", "handler ms");
  std::printf("  %-10s %10s %8s %12s\n", "----------", "---------", "------", "----------");
  for (const auto& s : bus.metrics().subscribers)
    std::printf("  %-10s %10llu %8llu %12.2f\n", s.name.c_str(), static_cast<unsigned long long>(s.delivered),
                static_cast<unsigned long long>(s.failed),
                std::chrono::duration<double, std::milli>(s.handler_time).count());
  std::printf("\n  first failure reports (%ld in all):\n", reports_total);
  for (const auto& r : reports) std::printf("    %s\n", r.c_str());
  std::printf("\n  audit's first entry: %s\n", audit.first().c_str());
  std::printf("  inventory reserved %ld units; email sent %ld confirmations; audit holds %ld entries\n",
              inventory.reserved_units(), email.sent(), audit.entries());

  const bool ok = drained.complete && email.sent() == placed && audit.entries() == placed;
  std::printf("\n%s\n", ok ? "every order placed; email and audit saw every one; inventory's failures stayed its own"
                           : "SOMETHING WAS LOST: see the table above");
  return ok ? 0 : 1;
}
