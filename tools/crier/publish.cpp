// crier publish BUS: one event from the command line, or CloudEvents JSON lines from stdin;
// crier replay BUS: moves a subscriber's position back (or forward) to a position or a time.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>

#include "cli.hpp"
#include "commands.hpp"

namespace crier::cli {

namespace {

// "1 event", "2 events".
std::string events(std::size_t n) { return std::to_string(n) + (n == 1 ? " event" : " events"); }

struct PublishArgs {
  std::string bus, input, type, data, subject, key, source = "/crier/cli";
  std::vector<std::string> attrs;
};

void run_publish(const PublishArgs& a) {
  if (!a.input.empty() && a.input != "-") throw Failure(usage, "publish reads stdin with -, not '" + a.input + "'");
  if (a.input == "-") {
    if (!a.type.empty() || !a.data.empty())
      throw Failure(usage, "publish -: the events come whole from stdin; --type and --data are for one event");
    // Ctrl-C is looked for between lines, held from before the bus starts its threads (they
    // inherit the mask; one without it would die of the signal). The C++ stream buffers on
    // its own, so that a line waiting in its buffer is seen as ready.
    hold_stop_signals();
    auto bus = open_bus(a.bus, /*read_only=*/false);
    std::ios::sync_with_stdio(false);
    Progress progress("publish", 0);
    // Lines are published in batches, pipelined, as many as are read without waiting (at
    // most kBatch): a pipe of many is not one round trip each, a line typed is published at once.
    constexpr std::size_t kBatch = 256;
    std::vector<Envelope> batch;
    std::size_t n = 0, published = 0, batch_from = 0, batch_to = 0;  // lines read; the batch's lines
    auto publish_batch = [&] {
      if (batch.empty()) return;
      try {
        bus->append(batch);
      } catch (const Error& e) {
        const std::string lines = batch_from == batch_to
                                      ? "stdin line " + std::to_string(batch_from)
                                      : "stdin lines " + std::to_string(batch_from) + "-" + std::to_string(batch_to);
        throw Failure(failure, lines + ": " + e.message() + " (" + events(published) + " before " +
                                   (batch_from == batch_to ? "it" : "them") + " published)");
      }
      published += batch.size();
      progress.add(batch.size());
      batch.clear();
    };
    std::string line;
    while (input_or_stop() && std::getline(std::cin, line)) {
      ++n;
      if (std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isspace(c); })) continue;
      try {
        batch.push_back(detail::cloudevent_to_publish(line, ""));
        if (batch.size() == 1) batch_from = n;
        batch_to = n;
      } catch (const Error& e) {
        publish_batch();  // the lines before it
        throw Failure(failure, "stdin line " + std::to_string(n) + ": " + e.message() + " (" + events(published) +
                                   " before it published)");
      }
      if (batch.size() == kBatch || std::cin.rdbuf()->in_avail() <= 0) publish_batch();
    }
    publish_batch();
    if (stopped())
      throw interrupted_after("published " + events(published) + ", the lines up to " + std::to_string(n) +
                              "; the rest of stdin was not read");
    if (!std::cin.eof())
      throw Failure(failure, "reading stdin failed after line " + std::to_string(n) + ": " + std::strerror(errno) +
                                 " (" + events(published) + " published)");
    std::printf("published %s\n", events(published).c_str());
    return;
  }
  if (a.type.empty() || a.data.empty()) throw Failure(usage, "publish wants --type and --data (or - for stdin)");
  const auto data = nlohmann::json::parse(a.data, nullptr, false);
  if (data.is_discarded()) throw Failure(usage, "--data is not JSON: " + a.data);
  Attributes attrs;
  attrs.subject = a.subject;
  attrs.partition_key = a.key;
  for (const auto& kv : a.attrs) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw Failure(usage, "--attr wants NAME=VALUE, not '" + kv + "'");
    attrs.extensions.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  Envelope e = new_envelope(a.type, data.dump(), "application/json", &attrs);
  e.source = a.source;
  try {  // before to_json(), which would write bytes that are not UTF-8 as U+FFFD
    validate(attrs);
    e.validate();
  } catch (const Error& x) {
    throw Failure(usage, x.message());
  }
  auto bus = open_bus(a.bus, /*read_only=*/false);
  std::printf("%s\n", bus->inspector().publish_json(e.to_json()).c_str());
}

struct RepublishArgs {
  std::string bus, id;
};

// The stored event with this CloudEvents id, sent again to every subscriber of its type as a
// new event (a fresh id, so that no transport takes it for a duplicate) that names the
// original in its `republishedof` attribute.
void run_republish(const RepublishArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/false);
  Inspector& in = bus->inspector();
  stop_on_signals();
  Progress progress("looking for " + a.id, 0);
  std::optional<Envelope> found;
  BrowseQuery q;
  q.newest_first = true;
  (void)read_pages(in, q, "", [&](const StoredEnvelope& s) {
    progress.add();
    if (s.envelope.id == a.id) found = s.envelope;
    return !found && !stopped();
  });
  if (stopped()) throw interrupted_after("the event was not found yet; nothing was published");
  if (!found) throw Failure(not_found, redacted_target(a.bus) + ": no stored event has id " + a.id);
  try {  // stored before crier checked what it does now: refused, rather than changed by to_json()
    found->validate();
  } catch (const Error& x) {
    throw Failure(failure, x.message() + "; not republished");
  }
  Envelope copy = *found;
  copy.id = new_envelope(copy.type, "", "").id;
  copy.extensions["republishedof"] = found->id;
  std::printf("%s\n", in.publish_json(copy.to_json()).c_str());
}

struct ReplayArgs {
  std::string bus, subscriber, type, to;
  bool yes = false;
};

void run_replay(const ReplayArgs& a) {
  auto bus = open_bus(a.bus, /*read_only=*/false);
  Inspector& in = bus->inspector();
  const auto known = in.subscribers();
  if (std::none_of(known.begin(), known.end(),
                   [&](const SubscriberStatus& s) { return s.subscriber == a.subscriber && s.event_type == a.type; }))
    throw Failure(not_found, redacted_target(a.bus) + ": subscriber '" + a.subscriber + "' has never read " + a.type);
  std::string position = a.to;
  const bool is_position =
      a.to == "end" ||
      (!a.to.empty() && std::all_of(a.to.begin(), a.to.end(), [](unsigned char c) { return std::isdigit(c); }));
  if (!is_position) {
    BrowseQuery q;
    q.event_type = a.type;
    q.since = format_time(parse_when(a.to));
    q.limit = 1;
    const auto first = in.browse(q);
    if (first.empty())
      throw Failure(not_found, redacted_target(a.bus) + ": no event of " + a.type + " at or after " + q.since);
    position = first.front().position;
  }
  if (!a.yes && !confirm("Move " + a.subscriber + " to " + position + " of " + a.type + "?"))
    throw Failure(usage, "not confirmed: nothing was done (replay without a terminal wants --yes)");
  in.move(a.subscriber, a.type, position);
  std::printf("%s now reads %s from %s\n", a.subscriber.c_str(), a.type.c_str(),
              position == "end" ? "the end (everything before skipped)" : position.c_str());
}

}  // namespace

void add_publish(CLI::App& app) {
  auto args = std::make_shared<PublishArgs>();
  auto* cmd = app.add_subcommand("publish",
                                 "Publish one event (--type, --data; prints its id), or CloudEvents JSON "
                                 "lines from stdin (-; prints how many were published)");
  cmd->add_option("bus", args->bus, "the store file, or a transport URL")->required();
  cmd->add_option("input", args->input, "- to read CloudEvents JSON lines from stdin");
  cmd->add_option("--type", args->type, "the event type, e.g. com.example.shop.order.placed");
  cmd->add_option("--data", args->data, "the event's data, JSON");
  cmd->add_option("--subject", args->subject, "CloudEvents subject");
  cmd->add_option("--key", args->key, "partition key: events of one key keep their order");
  cmd->add_option("--attr", args->attrs, "an extension attribute NAME=VALUE (repeatable)");
  cmd->add_option("--source", args->source, "CloudEvents source")->capture_default_str();
  cmd->footer(
      "Example: crier publish orders.db --type com.example.shop.order.placed --data '{\"order_id\":\"o-1\"}'\n"
      "         crier tail --json other.db --from beginning --limit 0 | crier publish orders.db -");
  cmd->callback([args] { run_publish(*args); });
}

void add_republish(CLI::App& app) {
  auto args = std::make_shared<RepublishArgs>();
  auto* cmd = app.add_subcommand("republish",
                                 "Send a stored event again to every subscriber of its type, as a new event "
                                 "(fresh id, attribute republishedof naming the original); prints the new id");
  cmd->add_option("bus", args->bus, "the store file, or a transport URL")->required();
  cmd->add_option("id", args->id, "the stored event's CloudEvents id (from crier tail)")->required();
  cmd->footer("Example: crier republish orders.db 01a23b27-2956-7341-aa4b-e9e43eea5876");
  cmd->callback([args] { run_republish(*args); });
}

void add_replay(CLI::App& app) {
  auto args = std::make_shared<ReplayArgs>();
  auto* cmd = app.add_subcommand("replay", "Move where a subscriber reads next: back to replay, or to the end to skip");
  cmd->add_option("bus", args->bus, "the store file, or a transport URL")->required();
  cmd->add_option("--subscriber", args->subscriber, "the subscriber's name")->required();
  cmd->add_option("--type", args->type, "the event type")->required();
  cmd->add_option("--to", args->to, "a POSITION, a TIME (RFC 3339, or -10m ...), or end")->required();
  cmd->add_flag("--yes,-y", args->yes, "do not ask for confirmation");
  cmd->footer("Example: crier replay orders.db --subscriber email --type com.example.shop.order.placed --to -1h");
  cmd->callback([args] { run_replay(*args); });
}

}  // namespace crier::cli
