// crier status BUS: where every subscriber stands, and what is stored per event type.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>

#include "cli.hpp"
#include "commands.hpp"

namespace crier::cli {

namespace {

struct StatusArgs {
  std::string bus;
  bool json = false;
  bool watch = false;
  double every = 2;
};

void print_status(const StatusArgs& a, Inspector& in) {
  const auto subscribers = in.subscribers();
  const auto types = in.event_types();
  const BreakerViews breakers = breaker_views(in, types);
  const RecentEvents recent =
      recent_events(in, std::chrono::system_clock::now() - std::chrono::minutes(1), "", kMostCounted);
  std::map<std::string, std::uint64_t> last_minute;
  for (const auto& [t, type] : recent.events) ++last_minute[type];
  const auto notices = in.notices();
  if (a.json) {
    nlohmann::json j = {
        {"subscribers", nlohmann::json::array()}, {"event_types", nlohmann::json::array()}, {"notices", notices}};
    for (const auto& s : subscribers) j["subscribers"].push_back(subscriber_json(s, breaker_of(breakers, s)));
    for (const auto& t : types)
      j["event_types"].push_back({{"event_type", t.event_type},
                                  {"events", t.events},
                                  {"newest", t.newest},
                                  {"newest_time", t.newest_time},
                                  {"last_minute", last_minute[t.event_type]}});
    std::printf("%s\n", json_text(j, 2).c_str());
    return;
  }
  // Positions are as wide as the transport prints them (a Redis entry id is 15 characters).
  int position_width = 9, newest_width = 10;
  for (const auto& s : subscribers) position_width = std::max(position_width, static_cast<int>(s.position.size()));
  for (const auto& t : types) newest_width = std::max(newest_width, static_cast<int>(t.newest.size()));
  std::printf("%-16s %-36s %*s %7s %8s %8s %9s %8s %5s  %s\n", "SUBSCRIBER", "EVENT TYPE", position_width, "POSITION",
              "LAG", "OLDEST", "IDLE", "IN FLIGHT", "RETRYING", "DEAD", "BREAKER");
  for (const auto& s : subscribers) {
    const auto idle = idle_time(s);
    // The breaker as its bus last announced it, and for how long ("-": never announced).
    std::string breaker = "-";
    if (const BreakerView* b = breaker_of(breakers, s))
      breaker = std::string(breaker_text(b->state)) + " " + age_text(age_of(b->since));
    std::printf("%-16s %-36s %*s %7llu %8s %8s %9llu %8llu %5llu  %s\n", s.subscriber.c_str(), s.event_type.c_str(),
                position_width, s.position.empty() ? "-" : s.position.c_str(), static_cast<unsigned long long>(s.lag),
                s.lag == 0 ? "-" : age_text(s.oldest_age).c_str(), idle ? age_text(*idle).c_str() : "never",
                static_cast<unsigned long long>(s.in_flight), static_cast<unsigned long long>(s.retrying),
                static_cast<unsigned long long>(s.dead_letters), breaker.c_str());
  }
  if (subscribers.empty()) std::printf("(no subscriber has read this bus yet)\n");
  std::printf("\n%-46s %10s %10s %*s  %s\n", "EVENT TYPE", "EVENTS", "LAST MIN", newest_width, "NEWEST", "NEWEST TIME");
  for (const auto& t : types)
    std::printf("%-46s %10llu %9llu%s %*s  %s\n", t.event_type.c_str(), static_cast<unsigned long long>(t.events),
                static_cast<unsigned long long>(last_minute[t.event_type]), recent.capped ? "+" : " ", newest_width,
                t.newest.c_str(), t.newest_time.c_str());
  if (types.empty()) std::printf("(no events stored)\n");
  for (const auto& n : notices) std::printf("\nnote: %s\n", n.c_str());
}

void run_status(const StatusArgs& a) {
  if (a.watch && a.every < 0.2) throw Failure(usage, "--every wants at least 0.2 seconds");
  // Held before the bus starts any thread, which inherits the mask.
  if (a.watch) hold_stop_signals();
  auto bus = open_bus(a.bus, /*read_only=*/true);
  Inspector& in = bus->inspector();
  if (!a.watch) return print_status(a, in);
  // On a terminal the table is redrawn in place; elsewhere each look follows the last.
  const bool redraw = is_terminal(1);
  Outage outage(redacted_target(a.bus), "watching", /*quiet=*/redraw);
  for (;;) {
    if (redraw)
      std::printf("\033[H\033[2J%s   %s   (every %.1f s, Ctrl-C to stop)\n\n", redacted_target(a.bus).c_str(),
                  format_time(std::chrono::system_clock::now()).c_str(), a.every);
    // A bus that cannot be reached (a server restarting) is said, in place of the table on a
    // terminal, else once on stderr, and looked at again; nothing is printed before a look
    // has read all it shows.
    try {
      print_status(a, in);
      outage.answered();
    } catch (const Error& e) {
      outage.failed(e);
      if (redraw) std::printf("%s\n(looking again every %.1f s)\n", e.message().c_str(), a.every);
    }
    if (!redraw) std::printf("\n");
    std::fflush(stdout);
    if (wait_for_stop(std::chrono::milliseconds(static_cast<long long>(a.every * 1000)))) return;
  }
}

}  // namespace

void add_status(CLI::App& app) {
  auto args = std::make_shared<StatusArgs>();
  auto* cmd = app.add_subcommand("status",
                                 "Where every subscriber stands: lag in events and age, in flight, retrying, "
                                 "dead letters, idle time, circuit breaker; events stored per type. Opens the bus "
                                 "read-only.");
  cmd->add_option("bus", args->bus, "the store file, or a transport URL (nats://HOST:PORT/STREAM)")->required();
  cmd->add_flag("--json", args->json, "print JSON for scripts");
  cmd->add_flag("--watch,-w", args->watch, "look again every --every seconds, in place on a terminal, until Ctrl-C");
  cmd->add_option("--every", args->every, "seconds between looks with --watch")->capture_default_str();
  cmd->footer("Example: crier status orders.db");
  cmd->callback([args] { run_status(*args); });
}

}  // namespace crier::cli
