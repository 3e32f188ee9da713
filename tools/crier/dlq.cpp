// crier dlq list|show|redrive|purge BUS: the dead letters, why each one failed, and sending
// them back or deleting them.
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

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
  double rate = 0;
  std::uint64_t edit = 0;
};

DeadLetterFilter filter_of(const DlqArgs& a) {
  DeadLetterFilter f;
  f.subscriber = a.subscriber;
  f.event_type = a.type;
  f.ids = a.ids;
  return f;
}

void run_list(const DlqArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/true);
  const auto letters = bus->dead_letter_queue().list(filter_of(a));
  if (a.json) {
    for (const auto& l : letters) std::printf("%s\n", json_text(letter_json(l, false)).c_str());
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
  if (letters.empty())
    throw Failure(not_found, redacted_target(a.bus) + ": no dead letter " + std::to_string(a.ids.front()));
  std::printf("%s\n", json_text(letter_json(letters.front(), true), 2).c_str());
}

// Redrive or purge: what is selected must be said (ids, or --all with optional filters), and
// confirmed on a terminal unless --yes. Many letters go in steps (at most --rate a second),
// each step a transaction of its own, with progress on a terminal; Ctrl-C ends it between
// steps.
void run_change(const DlqArgs& a, bool redrive) {
  if (a.ids.empty() && !a.all) throw Failure(usage, "say which dead letters: ID... (or --id ID...) or --all");
  if (a.rate < 0) throw Failure(usage, "--rate wants a number of dead letters a second (0: as fast as it goes)");
  auto bus = open_bus(a.bus, /*read_only=*/false);
  DeadLetterQueue& dlq = bus->dead_letter_queue();
  std::vector<std::uint64_t> ids;
  for (const DeadLetter& l : dlq.list(filter_of(a))) ids.push_back(l.id);
  if (ids.empty()) throw Failure(not_found, redacted_target(a.bus) + ": no dead letter matches");
  // Every letter named must be there: a mistyped id is said before anything is changed.
  std::string missing;
  for (std::uint64_t id : a.ids)
    if (std::find(ids.begin(), ids.end(), id) == ids.end())
      missing += (missing.empty() ? "" : ", ") + std::to_string(id);
  if (!missing.empty())
    throw Failure(not_found, redacted_target(a.bus) + ": no dead letter " + missing +
                                 (a.subscriber.empty() && a.type.empty() ? "" : " among those the filters select") +
                                 "; nothing was done");
  const std::size_t n = ids.size();
  const char* verb = redrive ? "redrove" : "purged";
  if (!a.yes && !confirm(std::string(redrive ? "Send " : "Delete ") + std::to_string(n) + " dead letter" +
                         (n == 1 ? "" : "s") + (redrive ? " back to their subscriber?" : " for good?")))
    throw Failure(usage, std::string("not confirmed: nothing was done (") + (redrive ? "redrive" : "purge") +
                             " without a terminal wants --yes)");
  stop_on_signals();
  Progress progress(redrive ? "redrive" : "purge", n);
  const std::size_t step = a.rate > 0 ? std::max<std::size_t>(1, static_cast<std::size_t>(a.rate / 10)) : 100;
  const auto start = std::chrono::steady_clock::now();
  std::size_t done = 0;
  for (std::size_t at = 0; at < n; at += step) {
    if (stopped())
      throw interrupted_after(std::string(verb) + " " + std::to_string(done) + " of " + std::to_string(n) +
                              " dead letters; the others are kept");
    if (a.rate > 0)  // paced: the subscriber is not flattened by thousands at once
      std::this_thread::sleep_until(start + std::chrono::duration<double>(static_cast<double>(at) / a.rate));
    DeadLetterFilter f;
    f.ids.assign(ids.begin() + static_cast<std::ptrdiff_t>(at),
                 ids.begin() + static_cast<std::ptrdiff_t>(std::min(n, at + step)));
    const std::size_t k = redrive ? dlq.redrive(f) : dlq.purge(f);
    done += k;
    progress.add(k);
  }
  std::printf("%s %zu dead letter%s\n", verb, done, done == 1 ? "" : "s");
}

// Edit-and-redrive: the letter's data in $VISUAL or $EDITOR, then back to its subscriber
// alone with the edited data.
void run_edit(const DlqArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/false);
  DeadLetterQueue& dlq = bus->dead_letter_queue();
  const auto letters = dlq.list({.ids = {a.edit}});
  if (letters.empty()) throw Failure(not_found, redacted_target(a.bus) + ": no dead letter " + std::to_string(a.edit));
  const DeadLetter& letter = letters.front();
  std::string original = letter.envelope.data;
  if (const auto j = nlohmann::json::parse(original, nullptr, false); !j.is_discarded()) original = j.dump(2) + "\n";

  char path[] = "/tmp/crier-edit-XXXXXX.json";
  const int fd = ::mkstemps(path, 5);
  if (fd < 0)
    throw Failure(failure, std::string("cannot create a file for the editor in /tmp: ") + std::strerror(errno));
  struct Remove {
    const char* path;
    ~Remove() { std::remove(path); }
  } remove_after{path};
  if (::write(fd, original.data(), original.size()) != static_cast<ssize_t>(original.size()) || ::close(fd) != 0)
    throw Failure(failure, std::string(path) + ": cannot write the data to edit");
  // The editor named by the environment, through the shell as editors are named ("code -w").
  const pid_t child = ::fork();
  if (child == 0) {
    ::execl("/bin/sh", "sh", "-c", "exec ${VISUAL:-${EDITOR:-vi}} \"$1\"", "sh", path, static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Failure(failure, "the editor ($VISUAL, $EDITOR or vi) failed: nothing was redriven");
  std::ifstream in(path, std::ios::binary);
  std::string edited((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (edited == original) throw Failure(usage, "the data was not changed: nothing was redriven");
  check_edited_data(letter.envelope, edited);
  if (const auto j = nlohmann::json::parse(edited, nullptr, false); !j.is_discarded()) edited = j.dump();
  if (!a.yes && !confirm("Send dead letter " + std::to_string(letter.id) + " back to " + letter.subscriber +
                         " with the edited data?"))
    throw Failure(usage, "not confirmed: nothing was done (edit without a terminal wants --yes)");
  dlq.redrive_edited(letter.id, edited);
  std::printf("redrove dead letter %llu to %s with edited data\n", static_cast<unsigned long long>(letter.id),
              letter.subscriber.c_str());
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
  dlq->footer("Example: crier dlq list orders.db --subscriber inventory");

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
    c->add_option("id,--id", args->ids, "these dead letters (ids from dlq list, as arguments or repeated --id)");
    c->add_flag("--all", args->all, "every dead letter the filters select");
    c->add_flag("--yes,-y", args->yes, "do not ask for confirmation");
    if (redrive) {
      c->add_option("--rate", args->rate, "at most this many a second (0: as fast as it goes)");
      c->add_option("--edit", args->edit,
                    "open this letter's data in $EDITOR; redrive the edited event to its subscriber");
    }
    c->footer(redrive ? "Example: crier dlq redrive orders.db --subscriber inventory --all --rate 100\n"
                        "         crier dlq redrive orders.db --edit 7"
                      : "Example: crier dlq purge orders.db 3 4");
    c->callback([args, redrive] {
      if (args->edit != 0) {
        if (!args->ids.empty() || args->all)
          throw Failure(usage, "--edit takes one letter; name no other ids and leave out --all");
        return run_edit(*args);
      }
      run_change(*args, redrive);
    });
  }
}

}  // namespace crier::cli
