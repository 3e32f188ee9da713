// crier dlq list|show|redrive|purge BUS: the dead letters, why each one failed, and sending
// them back or deleting them.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli.hpp"
#include "commands.hpp"

namespace crier::cli {

namespace {

struct DlqArgs {
  std::string bus, subscriber, type;
  std::vector<std::uint64_t> ids;
  bool all = false;
  bool yes = false;
  bool json = false;
};

DeadLetterFilter filter_of(const DlqArgs& a) {
  DeadLetterFilter f;
  f.subscriber = a.subscriber;
  f.event_type = a.type;
  f.ids = a.ids;
  return f;
}

nlohmann::json json_of(const DeadLetter& l, bool with_event) {
  nlohmann::json j = {{"id", l.id},
                      {"subscriber", l.subscriber},
                      {"event_type", l.envelope.type},
                      {"event_id", l.envelope.id},
                      {"attempts", l.attempts},
                      {"first_error", l.first_error},
                      {"last_error", l.last_error},
                      {"first_failure", format_time(l.first_failure)},
                      {"last_failure", format_time(l.last_failure)}};
  if (with_event) j["event"] = nlohmann::json::parse(l.envelope.to_json());
  return j;
}

void run_list(const DlqArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/true);
  const auto letters = bus->dead_letter_queue().list(filter_of(a));
  if (a.json) {
    for (const auto& l : letters) std::printf("%s\n", json_of(l, false).dump().c_str());
    return;
  }
  std::printf("%6s  %-16s %-32s %8s  %-27s  %s\n", "ID", "SUBSCRIBER", "EVENT TYPE", "ATTEMPTS", "LAST FAILURE",
              "REASON");
  for (const auto& l : letters)
    std::printf("%6llu  %-16s %-32s %8d  %-27s  %s\n", static_cast<unsigned long long>(l.id), l.subscriber.c_str(),
                l.envelope.type.c_str(), l.attempts, format_time(l.last_failure).c_str(), l.last_error.c_str());
  std::printf("(%zu dead letter%s)\n", letters.size(), letters.size() == 1 ? "" : "s");
}

void run_show(const DlqArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/true);
  const auto letters = bus->dead_letter_queue().list(filter_of(a));
  if (letters.empty()) throw Failure(not_found, a.bus + ": no dead letter " + std::to_string(a.ids.front()));
  std::printf("%s\n", json_of(letters.front(), true).dump(2).c_str());
}

// Redrive or purge: what is selected must be said (ids, or --all with optional filters), and
// confirmed on a terminal unless --yes.
void run_change(const DlqArgs& a, bool redrive) {
  if (a.ids.empty() && !a.all) throw Failure(usage, "say which dead letters: --id ID... or --all");
  auto bus = open_bus(a.bus, /*read_only=*/false);
  DeadLetterQueue& dlq = bus->dead_letter_queue();
  const DeadLetterFilter f = filter_of(a);
  const std::size_t n = dlq.count(f);
  if (n == 0) throw Failure(not_found, a.bus + ": no dead letter matches");
  const char* verb = redrive ? "redrive" : "purge";
  if (!a.yes && !confirm(std::string(redrive ? "Send " : "Delete ") + std::to_string(n) + " dead letter" +
                         (n == 1 ? "" : "s") + (redrive ? " back to their subscriber?" : " for good?")))
    throw Failure(usage, std::string("not confirmed: nothing was done (") + verb + " without a terminal wants --yes)");
  const std::size_t done = redrive ? dlq.redrive(f) : dlq.purge(f);
  std::printf("%s %zu dead letter%s\n", redrive ? "redrove" : "purged", done, done == 1 ? "" : "s");
}

CLI::App* add_letter_command(CLI::App& dlq, const char* name, const char* help, std::shared_ptr<DlqArgs> args) {
  auto* cmd = dlq.add_subcommand(name, help);
  cmd->add_option("bus", args->bus, "the store file, or a transport URL")->required();
  cmd->add_option("--subscriber", args->subscriber, "only this subscriber's");
  cmd->add_option("--type", args->type, "only events of this type");
  return cmd;
}

}  // namespace

void add_dlq(CLI::App& app) {
  auto* dlq = app.add_subcommand("dlq", "Dead letters: list, show, redrive, purge");
  dlq->require_subcommand(1);

  auto list = std::make_shared<DlqArgs>();
  auto* l = add_letter_command(*dlq, "list", "Dead letters with reason, attempts and last failure (read-only)", list);
  l->add_flag("--json", list->json, "one JSON object per line");
  l->footer("Example: crier dlq list orders.db --subscriber inventory");
  l->callback([list] { run_list(*list); });

  auto show = std::make_shared<DlqArgs>();
  auto* s = add_letter_command(*dlq, "show", "One dead letter whole: why, and the event (read-only)", show);
  s->add_option("id", show->ids, "its id (from dlq list)")->required()->expected(1);
  s->footer("Example: crier dlq show orders.db 7");
  s->callback([show] { run_show(*show); });

  for (const bool redrive : {true, false}) {
    auto args = std::make_shared<DlqArgs>();
    auto* c = add_letter_command(
        *dlq, redrive ? "redrive" : "purge",
        redrive ? "Send dead letters back to their subscriber, with fresh attempts" : "Delete dead letters for good",
        args);
    c->add_option("--id", args->ids, "these dead letters (repeatable)");
    c->add_flag("--all", args->all, "every dead letter the filters select");
    c->add_flag("--yes,-y", args->yes, "do not ask for confirmation");
    c->footer(redrive ? "Example: crier dlq redrive orders.db --subscriber inventory --all --yes"
                      : "Example: crier dlq purge orders.db --id 3 --id 4");
    c->callback([args, redrive] { run_change(*args, redrive); });
  }
}

}  // namespace crier::cli
