// crier tail BUS: stored events, one line each (or CloudEvents JSON lines), filtered, and
// followed as they come.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"

namespace crier::cli {

namespace {

struct TailArgs {
  std::string bus, type, subject, grep, from;
  std::size_t limit = 20;
  bool follow = false;
  bool json = false;
};

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool wanted(const TailArgs& a, const StoredEnvelope& s) {
  if (!a.subject.empty() && s.envelope.subject != a.subject) return false;
  if (!a.grep.empty() && s.envelope.data.find(a.grep) == std::string::npos &&
      s.envelope.id.find(a.grep) == std::string::npos && s.envelope.subject.find(a.grep) == std::string::npos)
    return false;
  return true;
}

void print(const TailArgs& a, const StoredEnvelope& s, int width) {
  const Envelope& e = s.envelope;
  if (a.json) {
    std::printf("%s\n", e.to_json().c_str());
    return;
  }
  std::string line = s.position + "  " + e.time + "  " + e.type + "  " + e.id;
  if (!e.subject.empty()) line += "  " + e.subject;
  std::string data = e.data;
  std::replace(data.begin(), data.end(), '\n', ' ');
  line += "  " + data;
  if (width > 0 && static_cast<int>(line.size()) > width)
    line = line.substr(0, static_cast<std::size_t>(width - 1)) + "~";
  std::printf("%s\n", line.c_str());
}

void run_tail(const TailArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/true);
  Inspector& in = bus->inspector();
  const int width = terminal_width();
  BrowseQuery q;
  q.event_type = a.type;
  std::size_t printed = 0;
  // A long read into a pipe shows its progress on the terminal; Ctrl-C ends it cleanly.
  stop_on_signals();
  std::optional<Progress> progress;
  if (!is_terminal(1)) progress.emplace("tail: events read", 0);
  auto show = [&](const StoredEnvelope& s) {
    if (progress) progress->add();
    if (stopped()) return false;
    if (!wanted(a, s)) return true;
    print(a, s, width);
    ++printed;
    return a.limit == 0 || printed < a.limit;
  };
  std::string last;
  if (a.from.empty() || a.from == "now") {
    // Newest first: the first is where following starts; the newest `limit` are printed
    // (none for "now"), the oldest of them first.
    BrowseQuery newest = q;
    newest.newest_first = true;
    std::vector<StoredEnvelope> kept;
    (void)read_pages(in, newest, "", [&](const StoredEnvelope& s) {
      if (last.empty()) last = s.position;
      if (a.from == "now") return false;
      if (wanted(a, s)) kept.push_back(s);
      return a.limit == 0 || kept.size() < a.limit;
    });
    for (auto it = kept.rbegin(); it != kept.rend(); ++it) print(a, *it, width);
  } else {
    if (all_digits(a.from))
      q.from = a.from;
    else if (a.from != "beginning")
      q.since = format_time(parse_when(a.from));
    last = read_pages(in, q, "", show);
    if (a.limit != 0 && printed >= a.limit) return;
  }
  if (!a.follow) return;
  std::fflush(stdout);
  hold_stop_signals();
  // Ctrl-C or SIGTERM ends the follow cleanly; between them, a look for new events. A bus that
  // cannot be reached (a server restarting) is said once on stderr, and followed again when it
  // answers, from the last event printed.
  Outage outage(redacted_target(a.bus), "following");
  for (;;) {
    if (wait_for_stop(std::chrono::milliseconds(250))) return;
    BrowseQuery next = q;
    next.since.clear();
    try {
      (void)read_pages(in, next, last, [&](const StoredEnvelope& s) {
        if (wanted(a, s)) print(a, s, width);
        last = s.position;
        return true;
      });
    } catch (const Error& e) {
      outage.failed(e);
      continue;
    }
    outage.answered();
    std::fflush(stdout);
  }
}

}  // namespace

void add_tail(CLI::App& app) {
  auto args = std::make_shared<TailArgs>();
  auto* cmd = app.add_subcommand("tail",
                                 "Stored events, one line each (position, time, type, id, subject, data), or "
                                 "CloudEvents JSON lines with --json. Opens the bus read-only.");
  cmd->add_option("bus", args->bus, "the store file, or a transport URL")->required();
  cmd->add_option("--type", args->type, "only events of this type");
  cmd->add_option("--subject", args->subject, "only events with this CloudEvents subject");
  cmd->add_option("--grep", args->grep, "only events whose data, id or subject contains this text");
  cmd->add_option("--from", args->from,
                  "beginning, now, a POSITION, or a TIME (RFC 3339, or -30s, -10m, -2h, -1d); "
                  "default: the newest --limit events");
  cmd->add_option("-n,--limit", args->limit, "at most this many events before following (0: all)")
      ->capture_default_str();
  cmd->add_flag("--follow,-f", args->follow, "keep printing new events until Ctrl-C");
  cmd->add_flag("--json", args->json, "CloudEvents structured JSON, one event per line (for jq)");
  cmd->footer("Example: crier tail orders.db --type com.example.shop.order.placed --from -10m --follow");
  cmd->callback([args] { run_tail(*args); });
}

}  // namespace crier::cli
