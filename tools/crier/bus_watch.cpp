#include "bus_watch.hpp"

#include <crier/metrics.hpp>

#include <algorithm>
#include <set>

namespace crier::cli {

namespace {

using std::chrono::milliseconds;

constexpr std::int64_t kMinuteMs = 60'000;
constexpr std::size_t kDataShown = 300;

std::int64_t now_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string series_name(const SubscriberStatus& s) { return s.subscriber + " \u00b7 " + s.event_type; }

void gauge(std::string& out, const char* name, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n";
}

}  // namespace

BusWatch::BusWatch(std::shared_ptr<Transport> bus, std::string name, Options options)
    : bus_(std::move(bus)), name_(std::move(name)), options_(options) {
  look();
  thread_ = std::thread([this] { run(); });
}

BusWatch::~BusWatch() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  changed_.notify_all();
  thread_.join();
}

std::string BusWatch::snapshot_json() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

std::string BusWatch::prometheus() const {
  std::lock_guard lock(mu_);
  return prometheus_;
}

std::uint64_t BusWatch::version() const {
  std::lock_guard lock(mu_);
  return version_;
}

std::uint64_t BusWatch::wait_newer(std::uint64_t seen, milliseconds timeout) const {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return version_ > seen || stopping_ || readers_released_; });
  return version_;
}

void BusWatch::release_readers() {
  {
    std::lock_guard lock(mu_);
    readers_released_ = true;
  }
  changed_.notify_all();
}

void BusWatch::look_now() {
  {
    std::lock_guard lock(mu_);
    look_asked_ = true;
  }
  wake_.notify_all();
}

void BusWatch::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait_for(lock, options_.interval, [&] { return stopping_ || look_asked_; });
    if (stopping_) return;
    look_asked_ = false;
    lock.unlock();
    look();
    lock.lock();
  }
}

// One look at the bus. Everything is read first, then published under the lock at once, so
// that readers never see half a look. A look that fails keeps the last good one and says why.
void BusWatch::look() {
  const std::int64_t now = now_ms();
  nlohmann::json j;
  std::string prom, link, failure;
  try {
    Inspector& in = bus_->inspector();
    const auto subscribers = in.subscribers();
    const auto types = in.event_types();
    const BreakerViews breakers = breaker_views(in, types);
    const auto notices = in.notices();

    // Events per type over the last minute: the events stored since the last look, newest
    // first down to the newest one counted before (or a minute back), added to the window.
    RecentEvents fresh = recent_events(in, std::chrono::system_clock::time_point(milliseconds(now - kMinuteMs)),
                                       newest_seen_, kMostCounted);
    const bool capped = fresh.capped;
    if (!fresh.newest.empty()) newest_seen_ = fresh.newest;
    for (auto it = fresh.events.rbegin(); it != fresh.events.rend(); ++it) last_minute_.push_back(std::move(*it));
    while (!last_minute_.empty() && last_minute_.front().first < now - kMinuteMs) last_minute_.pop_front();
    std::map<std::string, std::uint64_t> per_minute;
    for (const auto& [t, type] : last_minute_) ++per_minute[type];

    // The lag chart: one series per (subscriber, type), one point per look.
    std::map<std::string, std::uint64_t> lags;
    for (const auto& s : subscribers) lags[series_name(s)] = s.lag;
    lag_history_.emplace_back(now, std::move(lags));
    while (lag_history_.size() > options_.history) lag_history_.pop_front();

    BrowseQuery newest_events;
    newest_events.newest_first = true;
    newest_events.limit = options_.recent;
    auto recent = nlohmann::json::array();
    for (const auto& s : in.browse(newest_events)) {
      const Envelope& e = s.envelope;
      recent.push_back({{"position", s.position},
                        {"time", e.time},
                        {"type", e.type},
                        {"id", e.id},
                        {"subject", e.subject},
                        {"data", shortened(e.data, kDataShown)}});
    }

    std::uint64_t events = 0, lag = 0, in_flight = 0, retrying = 0, dead = 0;
    std::set<std::string> names;
    auto subs = nlohmann::json::array();
    for (const auto& s : subscribers) {
      names.insert(s.subscriber);
      lag += s.lag;
      in_flight += s.in_flight;
      retrying += s.retrying;
      dead += s.dead_letters;
      subs.push_back(subscriber_json(s, breaker_of(breakers, s)));
    }
    auto type_rows = nlohmann::json::array();
    for (const auto& t : types) {
      events += t.events;
      type_rows.push_back({{"event_type", t.event_type},
                           {"events", t.events},
                           {"newest", t.newest},
                           {"newest_time", t.newest_time},
                           {"last_minute", per_minute.count(t.event_type) ? per_minute[t.event_type] : 0}});
    }
    auto times = nlohmann::json::array();
    auto series = nlohmann::json::object();
    for (std::size_t i = 0; i < lag_history_.size(); ++i) {
      times.push_back(lag_history_[i].first);
      for (const auto& [key, value] : lag_history_[i].second) {
        auto& points = series[key];
        if (points.is_null()) points = nlohmann::json::array();
        while (points.size() < i) points.push_back(nullptr);  // a series that began later
        points.push_back(value);
      }
    }
    j = {{"bus", name_},
         {"transport", std::string(bus_->name())},
         {"time", format_time(std::chrono::system_clock::time_point(milliseconds(now)))},
         {"error", ""},
         {"notices", notices},
         {"totals",
          {{"events", events},
           {"subscribers", names.size()},
           {"lag", lag},
           {"in_flight", in_flight},
           {"retrying", retrying},
           {"dead_letters", dead}}},
         {"rate_capped", capped},
         {"subscribers", std::move(subs)},
         {"event_types", std::move(type_rows)},
         {"lag_history", {{"times", std::move(times)}, {"series", std::move(series)}}},
         {"recent", std::move(recent)}};

    struct Field {
      const char* name;
      const char* help;
      std::uint64_t SubscriberStatus::*field;
    };
    const Field fields[] = {
        {"crier_subscriber_lag_events", "Events a subscriber has not finished.", &SubscriberStatus::lag},
        {"crier_subscriber_in_flight", "Events held by a consumer now.", &SubscriberStatus::in_flight},
        {"crier_subscriber_retrying", "Failed events waiting for another attempt.", &SubscriberStatus::retrying},
        {"crier_subscriber_dead_letters", "Dead letters kept for an operator.", &SubscriberStatus::dead_letters},
    };
    auto labels = [](const SubscriberStatus& s) {
      return "{event_type=\"" + escape_prometheus_label(s.event_type) + "\",subscriber=\"" +
             escape_prometheus_label(s.subscriber) + "\"} ";
    };
    for (const Field& f : fields) {
      gauge(prom, f.name, f.help);
      for (const auto& s : subscribers) prom += f.name + std::string(labels(s)) + std::to_string(s.*f.field) + "\n";
    }
    gauge(prom, "crier_subscriber_oldest_unfinished_age_seconds",
          "Age of the oldest event a subscriber has not finished.");
    for (const auto& s : subscribers)
      prom += "crier_subscriber_oldest_unfinished_age_seconds" + labels(s) +
              std::to_string(static_cast<double>(s.oldest_age.count()) / 1000.0) + "\n";
    gauge(prom, "crier_subscriber_idle_seconds", "Time since a subscriber last finished an event.");
    for (const auto& s : subscribers)
      if (const auto idle = idle_time(s))
        prom += "crier_subscriber_idle_seconds" + labels(s) +
                std::to_string(static_cast<double>(idle->count()) / 1000.0) + "\n";
    gauge(prom, "crier_subscriber_breaker_state",
          "Circuit breaker as its bus last announced: 0 closed, 1 half-open, 2 open.");
    for (const auto& s : subscribers)
      if (const BreakerView* b = breaker_of(breakers, s))
        prom += "crier_subscriber_breaker_state" + labels(s) +
                (b->state == BreakerState::closed      ? "0"
                 : b->state == BreakerState::half_open ? "1"
                                                       : "2") +
                "\n";
    gauge(prom, "crier_stored_events", "Events stored now, per event type.");
    for (const auto& t : types)
      prom += "crier_stored_events{event_type=\"" + escape_prometheus_label(t.event_type) + "\"} " +
              std::to_string(t.events) + "\n";
    gauge(prom, "crier_events_last_minute", "Events stored over the last minute, per event type.");
    for (const auto& t : types)
      prom += "crier_events_last_minute{event_type=\"" + escape_prometheus_label(t.event_type) + "\"} " +
              std::to_string(per_minute[t.event_type]) + "\n";
  } catch (const std::exception& e) {
    failure = e.what();
  }
  // The link and the failed looks are said at every look; the subscribers' series only when
  // this look read them (a failed look's would be the last good one's, as if current). The
  // link as it is after the look, which may have waited for it to come back.
  const TransportHealth health = bus_->health();
  gauge(link, "crier_transport_connected", "1 while the transport is connected to its engine.");
  link += "crier_transport_connected{transport=\"" + escape_prometheus_label(bus_->name()) + "\"} " +
          (health.connected ? "1" : "0") + "\n";
  std::lock_guard lock(mu_);
  ++version_;
  if (failure.empty()) {
    j["version"] = version_;
    j["connected"] = health.connected;
    snapshot_ = json_text(j);
  } else {
    ++failed_looks_;
    nlohmann::json last = snapshot_.empty() ? nlohmann::json{{"bus", name_}} : nlohmann::json::parse(snapshot_);
    last["error"] = failure;
    last["version"] = version_;
    last["connected"] = false;
    snapshot_ = json_text(last);
    prom.clear();
  }
  prometheus_ = prom + link +
                "# HELP crier_dashboard_failed_looks_total Looks at the bus that failed.\n"
                "# TYPE crier_dashboard_failed_looks_total counter\n"
                "crier_dashboard_failed_looks_total " +
                std::to_string(failed_looks_) + "\n";
  changed_.notify_all();
}

}  // namespace crier::cli
