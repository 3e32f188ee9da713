#include "cli.hpp"

#include <nlohmann/json.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <iostream>

namespace crier::cli {

std::shared_ptr<Transport> open_bus(const std::string& target, bool read_only) {
  OpenOptions how;
  how.read_only = read_only;
  return open_transport(target, how);
}

bool is_terminal(int fd) { return ::isatty(fd) == 1; }

int terminal_width() {
  winsize w{};
  if (!is_terminal(1)) return 0;
  return ::ioctl(1, TIOCGWINSZ, &w) == 0 && w.ws_col > 20 ? w.ws_col : 80;
}

bool confirm(const std::string& question) {
  if (!is_terminal(0)) return false;
  std::fprintf(stderr, "%s [y/N] ", question.c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes";
}

Timestamp parse_when(const std::string& text) {
  if (text.size() >= 3 && text[0] == '-' && std::isdigit(static_cast<unsigned char>(text[1]))) {
    std::size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(text.substr(1), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    const std::string unit = text.substr(1 + used);
    const auto now = std::chrono::system_clock::now();
    if (unit == "s") return now - std::chrono::seconds(n);
    if (unit == "m") return now - std::chrono::minutes(n);
    if (unit == "h") return now - std::chrono::hours(n);
    if (unit == "d") return now - std::chrono::hours(24 * n);
  }
  try {
    return parse_time(text);
  } catch (const Error&) {
    throw Failure(usage, "'" + text + "' is not a time: give RFC 3339 (2026-12-03T10:00:00Z) or -30s, -10m, -2h, -1d");
  }
}

std::string read_pages(Inspector& in, BrowseQuery query, std::string last,
                       const std::function<bool(const StoredEnvelope&)>& more, std::size_t page) {
  for (;;) {
    if (!last.empty()) query.from = last;
    query.limit = std::max<std::size_t>(page, 1) + (last.empty() ? 0 : 1);  // `from` comes again
    bool progressed = false;
    for (const auto& s : in.browse(query)) {
      if (s.position == last) continue;  // `from` is included: seen already
      last = s.position;
      progressed = true;
      if (!more(s)) return last;
    }
    if (!progressed) return last;
  }
}

RecentEvents recent_events(Inspector& in, Timestamp since, const std::string& stop_at, std::size_t most) {
  using std::chrono::milliseconds;
  const std::int64_t since_ms = std::chrono::duration_cast<milliseconds>(since.time_since_epoch()).count();
  const std::int64_t now_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  RecentEvents out;
  BrowseQuery q;
  q.newest_first = true;
  (void)read_pages(in, q, "", [&](const StoredEnvelope& s) {
    if (out.newest.empty()) out.newest = s.position;
    if (s.position == stop_at) return false;
    std::int64_t t = now_ms;  // a foreign producer's unreadable time counts as now
    try {
      t = std::chrono::duration_cast<milliseconds>(parse_time(s.envelope.time).time_since_epoch()).count();
    } catch (const std::exception&) {
    }
    if (t < since_ms) return false;
    out.events.emplace_back(t, s.envelope.type);
    out.capped = out.events.size() >= most;
    return !out.capped;
  });
  return out;
}

namespace {
volatile std::sig_atomic_t stop_signal = 0;
extern "C" void note_stop(int sig) { stop_signal = sig; }
}  // namespace

void stop_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = note_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns, and the work looks at stopped()
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stopped() { return stop_signal != 0; }

Failure interrupted_after(const std::string& done) {
  return Failure(interrupted, "stopped by " + std::string(stop_signal == SIGTERM ? "SIGTERM" : "Ctrl-C") + ": " + done);
}

Progress::Progress(std::string what, std::uint64_t total)
    : what_(std::move(what)), total_(total), shown_(is_terminal(2)) {}

Progress::~Progress() {
  if (shown_ && drawn_ != std::chrono::steady_clock::time_point{}) std::fprintf(stderr, "\r\033[K");
}

void Progress::add(std::uint64_t n) {
  done_ += n;
  if (!shown_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - drawn_ < std::chrono::milliseconds(100)) return;
  drawn_ = now;
  draw();
}

void Progress::draw() {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0;
  char line[200];
  if (total_ > 0) {
    constexpr int kBar = 24;
    const double part = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    const int filled = static_cast<int>(part * kBar);
    const std::string bar = std::string(filled, '#') + std::string(kBar - filled, '.');
    const double left = rate > 0 ? static_cast<double>(total_ - std::min(done_, total_)) / rate : 0;
    std::snprintf(line, sizeof line, "%s [%s] %llu/%llu %3.0f%%  %.0f/s  ETA %s", what_.c_str(), bar.c_str(),
                  static_cast<unsigned long long>(done_), static_cast<unsigned long long>(total_), part * 100, rate,
                  age_text(std::chrono::milliseconds(static_cast<long long>(left * 1000))).c_str());
  } else {
    std::snprintf(line, sizeof line, "%s %llu  %.0f/s", what_.c_str(), static_cast<unsigned long long>(done_), rate);
  }
  std::fprintf(stderr, "\r\033[K%s", line);
  std::fflush(stderr);
}

void check_edited_data(const Envelope& original, const std::string& data) {
  const std::string& type = original.datacontenttype;
  const bool json = type.empty() || type.rfind("application/json", 0) == 0 || type.find("+json") != std::string::npos ||
                    type.rfind("text/json", 0) == 0;
  if (!json) return;
  try {
    const auto parsed = nlohmann::json::parse(data);
  } catch (const nlohmann::json::parse_error& e) {
    throw Failure(usage, "the edited data is not JSON (" + std::string(e.what()) + "); nothing was redriven");
  }
}

std::string age_text(std::chrono::milliseconds age) {
  const auto ms = age.count();
  char buf[32];
  if (ms < 1000)
    std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(ms));
  else if (ms < 120'000)
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
  else if (ms < 7'200'000)
    std::snprintf(buf, sizeof buf, "%lld min", static_cast<long long>(ms / 60'000));
  else if (ms < 172'800'000)
    std::snprintf(buf, sizeof buf, "%lld h", static_cast<long long>(ms / 3'600'000));
  else
    std::snprintf(buf, sizeof buf, "%lld d", static_cast<long long>(ms / 86'400'000));
  return buf;
}

}  // namespace crier::cli

namespace crier::cli {

std::chrono::milliseconds age_of(Timestamp t) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now() - t));
}

std::optional<std::chrono::milliseconds> idle_time(const SubscriberStatus& s) {
  if (s.last_settled == Timestamp{}) return std::nullopt;
  return age_of(s.last_settled);
}

BreakerViews breaker_views(Inspector& in, const std::vector<EventTypeStatus>& types, std::size_t most) {
  const std::string_view type = event_type_v<BreakerChanged>;
  const auto stored = std::find_if(types.begin(), types.end(), [&](const auto& t) { return t.event_type == type; });
  BreakerViews views;
  if (stored == types.end() || stored->events == 0) return views;  // none: nothing to read
  // Oldest first, each newer one replacing the last, when all of them fit: a transport reads
  // one type forward cheaply (NATS walks a subject forward, not back). Beyond `most`, the
  // newest `most`, newest first. No more is asked for than there are: on a SQLite store a
  // browse for more of a type than it holds scans every event after the last one (the
  // dashboard did so at each look).
  const bool all = stored->events <= most;
  const std::size_t wanted = all ? static_cast<std::size_t>(stored->events) : most;
  BrowseQuery query;
  query.event_type = std::string(type);
  query.newest_first = !all;
  const auto now = std::chrono::system_clock::now();
  std::size_t read = 0;
  (void)read_pages(
      in, query, "",
      [&](const StoredEnvelope& e) {
        BreakerChanged change;
        Timestamp since;
        try {
          change = Codec<BreakerChanged>::decode(e.envelope.data);
          since = parse_time(e.envelope.time);
        } catch (const std::exception&) {
          return ++read < wanted;  // not one a bus wrote (a hand-made event of the type): it says nothing
        }
        auto [it, first] = views.try_emplace({change.subscriber, change.event_type});
        if (first || all) {  // oldest first: this one is newer; newest first: only the first counts
          BreakerView& v = it->second;
          v.since = since;
          v.reason = change.reason;
          v.state = change.state == BreakerState::open && now >= since + change.cooldown ? BreakerState::half_open
                                                                                         : change.state;
        }
        return ++read < wanted;
      },
      std::min<std::size_t>(wanted, 500));
  return views;
}

const char* breaker_text(BreakerState state) {
  return state == BreakerState::half_open ? "half-open" : to_string(state);
}

const BreakerView* breaker_of(const BreakerViews& views, const SubscriberStatus& s) {
  const auto it = views.find({s.subscriber, s.event_type});
  return it == views.end() ? nullptr : &it->second;
}

nlohmann::json subscriber_json(const SubscriberStatus& s, const BreakerView* breaker) {
  const auto idle = idle_time(s);
  nlohmann::json j = {{"subscriber", s.subscriber},
                      {"event_type", s.event_type},
                      {"position", s.position},
                      {"lag", s.lag},
                      {"oldest_age_ms", s.oldest_age.count()},
                      {"in_flight", s.in_flight},
                      {"retrying", s.retrying},
                      {"dead_letters", s.dead_letters},
                      {"idle_ms", idle ? nlohmann::json(idle->count()) : nlohmann::json(nullptr)},
                      {"breaker", nullptr}};
  if (breaker)
    j["breaker"] = {
        {"state", breaker_text(breaker->state)}, {"since", format_time(breaker->since)}, {"reason", breaker->reason}};
  return j;
}

std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string shortened(std::string_view text, std::size_t most) {
  if (text.size() <= most) return std::string(text);
  std::size_t cut = most;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "\u2026";
}

nlohmann::json letter_json(const DeadLetter& l, bool whole, std::size_t data_shown) {
  nlohmann::json j = {{"id", l.id},
                      {"subscriber", l.subscriber},
                      {"event_type", l.envelope.type},
                      {"event_id", l.envelope.id},
                      {"subject", l.envelope.subject},
                      {"attempts", l.attempts},
                      {"first_error", l.first_error},
                      {"last_error", l.last_error},
                      {"first_failure", format_time(l.first_failure)},
                      {"last_failure", format_time(l.last_failure)}};
  if (whole)
    j["event"] = nlohmann::json::parse(l.envelope.to_json());
  else if (data_shown > 0)
    j["data"] = shortened(l.envelope.data, data_shown);
  return j;
}

namespace {
sigset_t stop_signals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  return stop;
}
}  // namespace

void hold_stop_signals() {
  const sigset_t stop = stop_signals();
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
}

bool wait_for_stop(std::chrono::milliseconds timeout) {
  if (stopped()) return true;  // caught by a handler, in a thread started before the hold
  const sigset_t stop = stop_signals();
  const timespec wait{static_cast<time_t>(timeout.count() / 1000),
                      static_cast<long>(timeout.count() % 1000) * 1'000'000};
  const int sig = sigtimedwait(&stop, nullptr, &wait);
  if (sig != SIGINT && sig != SIGTERM) return false;
  stop_signal = sig;
  return true;
}

bool input_or_stop() {
  for (;;) {
    if (std::cin.rdbuf()->in_avail() != 0) return true;  // buffered already, or at the end
    pollfd in{0, POLLIN, 0};
    if (::poll(&in, 1, 100) != 0) return true;  // readable, at its end, or an error to read
    if (wait_for_stop(std::chrono::milliseconds(0))) return false;
  }
}

void Outage::failed(const Error& e) {
  if (e.code() != Errc::transport_error) throw;  // the exception being handled, whole
  std::fflush(stdout);                           // what was printed before it comes first
  if (!std::exchange(on_, true) && !quiet_)
    std::fprintf(stderr, "crier: %s; still %s\n", e.message().c_str(), doing_.c_str());
}

void Outage::answered() {
  if (std::exchange(on_, false) && !quiet_) std::fprintf(stderr, "crier: %s answers again\n", bus_.c_str());
}

}  // namespace crier::cli
