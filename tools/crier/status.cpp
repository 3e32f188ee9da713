// crier status BUS: where every subscriber stands, and what is stored per event type.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli.hpp"
#include "commands.hpp"

namespace crier::cli {

namespace {

struct StatusArgs {
  std::string bus;
  bool json = false;
};

void run_status(const StatusArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/true);
  Inspector& in = bus->inspector();
  const auto subscribers = in.subscribers();
  const auto types = in.event_types();
  if (a.json) {
    nlohmann::json j = {{"subscribers", nlohmann::json::array()}, {"event_types", nlohmann::json::array()}};
    for (const auto& s : subscribers)
      j["subscribers"].push_back({{"subscriber", s.subscriber},
                                  {"event_type", s.event_type},
                                  {"position", s.position},
                                  {"lag", s.lag},
                                  {"oldest_age_ms", s.oldest_age.count()},
                                  {"in_flight", s.in_flight},
                                  {"retrying", s.retrying},
                                  {"dead_letters", s.dead_letters}});
    for (const auto& t : types)
      j["event_types"].push_back(
          {{"event_type", t.event_type}, {"events", t.events}, {"newest", t.newest}, {"newest_time", t.newest_time}});
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%-20s %-36s %10s %8s %10s %9s %8s %6s\n", "SUBSCRIBER", "EVENT TYPE", "POSITION", "LAG", "OLDEST",
              "IN FLIGHT", "RETRYING", "DEAD");
  for (const auto& s : subscribers)
    std::printf("%-20s %-36s %10s %8llu %10s %9llu %8llu %6llu\n", s.subscriber.c_str(), s.event_type.c_str(),
                s.position.empty() ? "-" : s.position.c_str(), static_cast<unsigned long long>(s.lag),
                s.lag == 0 ? "-" : age_text(s.oldest_age).c_str(), static_cast<unsigned long long>(s.in_flight),
                static_cast<unsigned long long>(s.retrying), static_cast<unsigned long long>(s.dead_letters));
  if (subscribers.empty()) std::printf("(no subscriber has read this bus yet)\n");
  std::printf("\n%-57s %10s %10s  %s\n", "EVENT TYPE", "EVENTS", "NEWEST", "NEWEST TIME");
  for (const auto& t : types)
    std::printf("%-57s %10llu %10s  %s\n", t.event_type.c_str(), static_cast<unsigned long long>(t.events),
                t.newest.c_str(), t.newest_time.c_str());
  if (types.empty()) std::printf("(no events stored)\n");
}

}  // namespace

void add_status(CLI::App& app) {
  auto args = std::make_shared<StatusArgs>();
  auto* cmd = app.add_subcommand("status",
                                 "Where every subscriber stands: lag in events and age, in flight, retrying, "
                                 "dead letters; events stored per type. Opens the bus read-only.");
  cmd->add_option("bus", args->bus, "the store file, or a transport URL (nats://HOST:PORT/STREAM)")->required();
  cmd->add_flag("--json", args->json, "print JSON for scripts");
  cmd->footer("Example: crier status orders.db");
  cmd->callback([args] { run_status(*args); });
}

}  // namespace crier::cli
