// What the crier command's subcommands share: opening the bus they name, the exit codes,
// terminal facts, and reading times and positions as operators write them.
#pragma once

#include <crier/crier.hpp>
#include <crier/open.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace crier::cli {

/// The exit codes, as `crier --help` documents them.
enum Exit : int {
  ok = 0,
  failure = 1,        ///< the bus refused or failed (an error from crier)
  usage = 2,          ///< the command line is wrong
  not_found = 3,      ///< the bus, a dead letter, a subscriber or an event named does not exist
  interrupted = 130,  ///< stopped by Ctrl-C (or SIGTERM); what was done is reported
};

/// An error the command reports and exits with: what happened, and its exit code.
struct Failure : std::runtime_error {
  Failure(Exit code, const std::string& what) : std::runtime_error(what), code(code) {}
  Exit code;
};

/// Opens the bus `target` names (a store file, or a URL of a registered transport). A bus
/// that is not there is Error(Errc::not_found): the tools never make one.
std::shared_ptr<Transport> open_bus(const std::string& target, bool read_only);

/// True when stdout (fd 1) or stdin (fd 0) is a terminal.
bool is_terminal(int fd);
/// The terminal's width in columns; 0 when stdout is not a terminal (lines are not cut).
int terminal_width();

/// Asks "<question> [y/N]" on the terminal; true for yes. Without a terminal it refuses:
/// a script says --yes.
bool confirm(const std::string& question);

/// A time as an operator writes it: RFC 3339, or relative to now ("-10m", "-2h", "-30s",
/// "-1d"). Throws Failure(usage) saying what is accepted.
Timestamp parse_when(const std::string& text);

/// Stored events after `last` (a position seen before; empty: from the query's own start),
/// read in pages of `page` events in the query's order, each given to `more` until it returns
/// false. Returns the last position seen (`last` when there was nothing new). A page no larger
/// than what is wanted spares a store without an index a scan for events that are not there.
std::string read_pages(Inspector& in, BrowseQuery query, std::string last,
                       const std::function<bool(const StoredEnvelope&)>& more, std::size_t page = 500);

/// The newest stored events (time in ms since the epoch, type), newest first: back to the
/// first one older than `since`, or to the one at position `stop_at` (not included), or
/// `most` of them. `newest` is the newest position seen; `capped` says `most` ended it.
struct RecentEvents {
  std::vector<std::pair<std::int64_t, std::string>> events;
  std::string newest;
  bool capped = false;
};
RecentEvents recent_events(Inspector& in, Timestamp since, const std::string& stop_at, std::size_t most);
/// At most this many events are counted per look at the last minute (`status`, the dashboard):
/// a bus publishing faster shows a rate that is at least what it says (and says so).
inline constexpr std::size_t kMostCounted = 100'000;

/// From now on Ctrl-C (SIGINT) and SIGTERM only mark the work as stopped: long work asks
/// stopped() between steps, reports what it did, and leaves nothing half-done.
void stop_on_signals();
bool stopped();
/// Failure(interrupted) saying how far the work got.
Failure interrupted_after(const std::string& done);

/// A progress line on stderr (count, rate and, with a total, percent and time left), redrawn
/// at most ten times a second, and only when stderr is a terminal; cleared when destroyed.
class Progress {
 public:
  Progress(std::string what, std::uint64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void add(std::uint64_t n = 1);

 private:
  void draw();
  const std::string what_;
  const std::uint64_t total_;
  const bool shown_;
  std::uint64_t done_ = 0;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point drawn_{};
};

/// Edit-and-redrive's check of edited data: when the event's content type is JSON (or not
/// given: crier's default codec), `data` must be JSON. Throws Failure(usage) saying where
/// it is not.
void check_edited_data(const Envelope& original, const std::string& data);

/// "3.2 s", "4 min", "2 h": an age for people.
std::string age_text(std::chrono::milliseconds age);

/// How long ago `t` was (0 for a time to come).
std::chrono::milliseconds age_of(Timestamp t);
/// How long ago a subscriber last finished an event; nullopt when it never has.
std::optional<std::chrono::milliseconds> idle_time(const SubscriberStatus& s);

/// A subscriber's circuit breaker as the bus running it last announced (the
/// crier.breakerchanged events stored on the bus): "open", "half-open" (an opening whose
/// cool-down is over, so a probe is due) or "closed"; since when, and why. A bus process
/// that stopped with its breaker open is still shown open (then half-open) until the
/// breaker changes again.
struct BreakerView {
  BreakerState state = BreakerState::closed;
  Timestamp since{};
  std::string reason{};
};
/// "closed", "half-open" or "open", as the tools print a breaker state.
const char* breaker_text(BreakerState state);
using BreakerViews = std::map<std::pair<std::string, std::string>, BreakerView>;
/// The newest breaker announcement per (subscriber, event type), read only when `types` (the
/// bus's event types) has some: all of them when they are at most `most`, else the newest
/// `most`. Announcements that do not decode are passed over.
BreakerViews breaker_views(Inspector& in, const std::vector<EventTypeStatus>& types, std::size_t most = 10'000);
/// The view of `s`'s breaker among `views`; null when its bus never announced one.
const BreakerView* breaker_of(const BreakerViews& views, const SubscriberStatus& s);

/// A subscriber's status as the tools print it in JSON (`idle_ms` null: never; `breaker`
/// null: never announced).
nlohmann::json subscriber_json(const SubscriberStatus& s, const BreakerView* breaker);
/// `j` as JSON text (`indent` as nlohmann's dump). Bytes that are not UTF-8 (a handler's
/// error message in Latin-1, an event stored before crier refused them) are written as U+FFFD:
/// a listing never fails on one.
std::string json_text(const nlohmann::json& j, int indent = -1);
/// `text` when it has at most `most` bytes; else its first `most` bytes or fewer, not cutting
/// a UTF-8 character in two, and "…".
std::string shortened(std::string_view text, std::size_t most);
/// A dead letter in JSON: why, and with `whole` its event (CloudEvents JSON), else the first
/// `data_shown` bytes of its data (none when 0).
nlohmann::json letter_json(const DeadLetter& l, bool whole, std::size_t data_shown = 0);

/// From now on Ctrl-C and SIGTERM wait for wait_for_stop() (a follow, a watch) instead of
/// ending the program; call before the work whose end they should be, and before opening the
/// bus: only threads started after it inherit the hold.
void hold_stop_signals();
/// Waits up to `timeout` for Ctrl-C or SIGTERM (held, or come before); true when one came
/// (stopped() is true from then on).
bool wait_for_stop(std::chrono::milliseconds timeout);
/// With the stop signals held: waits until std::cin has a line to read (or its end), or a
/// stop signal came (false then). A signal thus never interrupts a read half-way.
bool input_or_stop();

/// What a tool that keeps looking at a bus (tail --follow, status --watch) says of an outage:
/// once on stderr that the bus cannot be reached ("...; still <doing>"), once that it answers
/// again. `quiet`: neither (a tool that shows the outage in its own output).
class Outage {
 public:
  Outage(std::string bus, std::string doing, bool quiet = false)
      : bus_(std::move(bus)), doing_(std::move(doing)), quiet_(quiet) {}
  /// A look that failed, called in the handler of `e`: rethrows it unless the bus could not
  /// be reached.
  void failed(const Error& e);
  /// A look that worked.
  void answered();

 private:
  std::string bus_, doing_;
  bool quiet_;
  bool on_ = false;
};

}  // namespace crier::cli
