// The dashboard, run as the crier program on a real store file: what its API and /metrics
// say matches the store; it answers only its own Host, takes changes only as same-origin
// JSON POSTs with its header, wants its token when it has one, and refuses to listen beyond
// loopback without one. The browser test drives the page itself in headless Chromium.
#include <gtest/gtest.h>

#include <httplib.h>

#include <crier/nats.hpp>
#include <crier/sqlite.hpp>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>

#include "cli_process.hpp"
#include "nats_server.hpp"

using namespace test;

namespace {

constexpr const char* kToken = "t0ken-for-the-dashboard-test";

// `crier dashboard` on the store, on a free loopback port, looking at the store every 100 ms.
class Dashboard {
 public:
  Dashboard(const ScratchDir& dir, const std::string& path, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"dashboard", path, "--listen", "127.0.0.1:0", "--interval", "100"};
    args.insert(args.end(), more.begin(), more.end());
    crier_ = std::make_unique<RunningCrier>(dir, args);
    const std::string first = crier_->line().value_or("");  // "crier dashboard: http://127.0.0.1:PORT/"
    const auto colon = first.rfind(':');
    if (first.rfind("crier dashboard: http://", 0) != 0 || colon == std::string::npos)
      throw std::runtime_error("the dashboard did not start: " + first + crier_->err());
    port_ = std::stoi(first.substr(colon + 1));
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    return c;
  }
  /// SIGTERM, as a service manager stops it; its exit code.
  int stop() {
    crier_->signal(SIGTERM);
    return crier_->wait();
  }
  std::string err() const { return crier_->err(); }

 private:
  std::unique_ptr<RunningCrier> crier_;
  int port_ = 0;
};

const httplib::Headers kAction{{"X-Crier-Action", "1"}};

nlohmann::json status_of(httplib::Client& c) {
  const auto r = c.Get("/api/status");
  if (!r || r->status != 200) throw std::runtime_error("GET /api/status failed");
  return nlohmann::json::parse(r->body);
}

// Reads the dashboard's event stream (a snapshot at each look) until one satisfies `done`;
// that one (null when the stream ended first).
nlohmann::json snapshot_where(httplib::Client& c, const std::function<bool(const nlohmann::json&)>& done) {
  std::string buffer;
  nlohmann::json found;
  c.set_read_timeout(60, 0);
  (void)c.Get("/api/stream", [&](const char* data, std::size_t n) {
    buffer.append(data, n);
    for (auto end = buffer.find("\n\n"); end != std::string::npos; end = buffer.find("\n\n")) {
      const std::string event = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      const auto at = event.find("data: ");
      if (at == std::string::npos) continue;
      auto snapshot = nlohmann::json::parse(event.substr(at + 6), nullptr, false);
      if (!snapshot.is_discarded() && done(snapshot)) {
        found = std::move(snapshot);
        return false;
      }
    }
    return true;
  });
  return found;
}

std::size_t letters_in(const std::string& path) {
  auto store = crier::sqlite::open(path, {.read_only = true});
  return store->dead_letter_queue().count({});
}

using DashboardTest = CliTest;

}  // namespace

TEST_F(DashboardTest, ServesTheStoreAsJsonPrometheusTextAndItsOwnPageOnly) {
  Dashboard d(dir, path);
  auto c = d.client();
  const auto s = status_of(c);
  EXPECT_EQ(s["totals"]["events"], 24);  // 20 jobs, 4 dead-letter announcements
  EXPECT_EQ(s["totals"]["dead_letters"], 4);
  auto by_name = subscribers_by_name(s);  // not const: a missing key reads as null
  EXPECT_EQ(by_name.at("audit")["lag"], 20);
  EXPECT_EQ(by_name.at("billing")["dead_letters"], 4);

  auto r = c.Get("/api/dead-letters?subscriber=billing&error=JOB%2010&limit=10");
  ASSERT_TRUE(r);
  auto page = nlohmann::json::parse(r->body);
  EXPECT_EQ(page["total"], 1) << r->body;  // error text matched without regard to case
  EXPECT_EQ(page["letters"][0]["last_error"], "job 10 has no price");
  r = c.Get("/api/dead-letters?limit=many");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("limit must be a whole number"), std::string::npos) << r->body;
  const std::string id = std::to_string(page["letters"][0]["id"].get<std::uint64_t>());
  r = c.Get(("/api/dead-letters/" + id).c_str());
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(nlohmann::json::parse(r->body)["event"]["data"]["n"], 10);
  EXPECT_EQ(c.Get("/api/dead-letters/999999")->status, 404);

  r = c.Get("/");
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("<title>crier dashboard</title>"), std::string::npos);
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("default-src 'none'"), std::string::npos);
  EXPECT_EQ(c.Get("/app.js")->status, 200);
  for (const char* elsewhere : {"/../../etc/passwd", "/etc/passwd", "/index.html/..", "/%2e%2e/%2e%2e/etc/passwd"}) {
    r = c.Get(elsewhere);
    EXPECT_TRUE(!r || r->status >= 400) << elsewhere << " was served";
    if (r) {
      EXPECT_EQ(r->body.find("root:"), std::string::npos);
    }
  }

  r = c.Get("/metrics");
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("crier_subscriber_lag_events{event_type=\"com.example.test.job\",subscriber=\"audit\"} 20"),
            std::string::npos)
      << r->body;
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    std::ofstream(dir.file("metrics.txt")) << r->body;
    const std::string check =
        "promtool check metrics < " + dir.file("metrics.txt") + " > " + dir.file("lint") + " 2>&1";
    EXPECT_EQ(std::system(check.c_str()), 0) << read_file(dir.file("lint"));
  }
  EXPECT_EQ(d.stop(), 0) << d.err();
}

// A dashboard on a NATS bus whose server goes away says so, and its /metrics says the link is
// down and counts the failed looks, rather than serving the last good look as if current
// (found: crier_transport_connected stayed 1, and the failed looks showed only once the
// server was back). When the server returns, so does everything.
TEST_F(DashboardTest, OnANatsBusALostServerIsSaidAndNothingStaleIsServedAsCurrent) {
  NatsServer server;
  const std::string bus = server.url() + "/DASH";
  {
    crier::nats::Options o;  // the bus's program makes its streams; the tools make none
    o.servers = {server.url()};
    o.stream = "DASH";
    o.subject_prefix = "dash";
    (void)crier::nats::connect(o);
  }
  ASSERT_EQ(run_crier(dir, {"publish", bus, "--type", job, "--data", R"({"n":1})"}).code, 0);
  Dashboard d(dir, bus);
  auto c = d.client();
  const std::string stored = "crier_stored_events{event_type=\"" + job + "\"} 1\n";
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("crier_transport_connected{transport=\"nats\"} 1\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find(stored), std::string::npos) << r->body;

  server.kill();
  const auto failing = snapshot_where(c, [](const nlohmann::json& s) { return !s.value("error", "").empty(); });
  ASSERT_FALSE(failing.is_null()) << "the event stream ended before a look failed";
  const std::string error = failing.value("error", "");
  EXPECT_NE(error.find("connection to " + server.url() + " is lost; reconnecting"), std::string::npos) << error;
  EXPECT_FALSE(failing.value("connected", true));
  r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("crier_transport_connected{transport=\"nats\"} 0\n"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("crier_stored_events{"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("crier_dashboard_failed_looks_total 0\n"), std::string::npos) << r->body;

  server.start();
  const auto back = snapshot_where(c, [](const nlohmann::json& s) { return s.value("error", "x").empty(); });
  ASSERT_FALSE(back.is_null()) << "the event stream ended before a look succeeded again";
  EXPECT_TRUE(back.value("connected", false));
  r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("crier_transport_connected{transport=\"nats\"} 1\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find(stored), std::string::npos) << r->body;
  EXPECT_EQ(d.stop(), 0) << d.err();
}

// Found with a store whose event had a subject that was not UTF-8: the dashboard ended at its
// first look ("[json.exception.type_error.316] invalid UTF-8 byte"). Such bytes are shown as
// U+FFFD, and data is shortened between characters, never inside one.
TEST_F(DashboardTest, ShowsBytesThatAreNotUtf8AndCutsDataBetweenCharacters) {
  const std::string data = store_text_that_is_not_utf8(path);
  const std::string replacement = "\xef\xbf\xbd";  // U+FFFD
  Dashboard d(dir, path);
  auto c = d.client();
  const auto s = status_of(c);
  bool old_seen = false, cut_seen = false;
  for (const auto& e : s["recent"]) {
    if (e["subject"] == "order-" + replacement) old_seen = true;
    if (e["data"] == data.substr(0, 299) + "\u2026") cut_seen = true;
  }
  EXPECT_TRUE(old_seen) << s["recent"].dump();
  EXPECT_TRUE(cut_seen) << "want the data cut before the 'é' at byte 299: " << s["recent"].dump();

  const auto r = c.Get("/api/dead-letters?subscriber=legacy");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto page = nlohmann::json::parse(r->body);
  ASSERT_EQ(page["total"], 1) << r->body;
  EXPECT_EQ(page["letters"][0]["last_error"], "customer M" + replacement + "ller has no account");
  EXPECT_EQ(d.stop(), 0) << d.err();
}

TEST_F(DashboardTest, TakesChangesOnlyAsSameOriginJsonPostsWithItsHeaderFromItsOwnHost) {
  Dashboard d(dir, path);
  auto c = d.client();
  const std::string body = R"({"all": true, "subscriber": "billing"})";
  auto r = c.Post("/api/dead-letters/purge", body, "application/json");  // no header: a form, another site
  EXPECT_EQ(r->status, 403);
  r = c.Post("/api/dead-letters/purge", kAction, body, "text/plain");
  EXPECT_EQ(r->status, 403);
  httplib::Headers foreign = kAction;
  foreign.emplace("Origin", "http://evil.example");
  r = c.Post("/api/dead-letters/purge", foreign, body, "application/json");
  EXPECT_EQ(r->status, 403);
  httplib::Headers cross_site = kAction;
  cross_site.emplace("Sec-Fetch-Site", "cross-site");
  r = c.Post("/api/dead-letters/purge", cross_site, body, "application/json");
  EXPECT_EQ(r->status, 403);
  httplib::Headers rebound = kAction;  // a name rebound to 127.0.0.1 (DNS rebinding)
  rebound.emplace("Host", "evil.example:" + std::to_string(d.port()));
  r = c.Post("/api/dead-letters/purge", rebound, body, "application/json");
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(c.Get("/api/status", {{"Host", "evil.example"}})->status, 403);
  EXPECT_EQ(letters_in(path), 4u) << "a refused request changed the store";

  r = c.Post("/api/dead-letters/redrive", kAction, "{\"ids\": [\"one\"]}", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("ids must be dead letter ids"), std::string::npos) << r->body;
  r = c.Post("/api/dead-letters/redrive", kAction, "{not json", "application/json");
  EXPECT_EQ(r->status, 400);
  const auto letters = nlohmann::json::parse(c.Get("/api/dead-letters")->body)["letters"];
  const std::uint64_t first = letters[0]["id"], second = letters[1]["id"];
  r = c.Post(("/api/dead-letters/" + std::to_string(second) + "/edit").c_str(), kAction, R"({"data": "{broken"})",
             "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("the edited data is not JSON"), std::string::npos) << r->body;
  EXPECT_EQ(letters_in(path), 4u);

  r = c.Post("/api/dead-letters/redrive", kAction, "{\"ids\": [" + std::to_string(first) + "]}", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(nlohmann::json::parse(r->body)["redriven"], 1);
  r = c.Post(("/api/dead-letters/" + std::to_string(second) + "/edit").c_str(), kAction,
             R"({"data": "{\"n\": 11, \"note\": \"job 10, priced\"}"})", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(letters_in(path), 2u);
  EXPECT_EQ(d.stop(), 0) << d.err();
}

TEST_F(DashboardTest, WithATokenEveryRequestCarriesIt) {
  Dashboard d(dir, path, {"--token", kToken});
  auto c = d.client();
  EXPECT_EQ(c.Get("/api/status")->status, 401);
  EXPECT_EQ(c.Get("/")->status, 401);
  EXPECT_EQ(c.Get("/api/status", {{"Authorization", "Bearer wrong-token-of-same-size!!"}})->status, 401);
  EXPECT_EQ(c.Get("/api/status", {{"Authorization", std::string("Bearer ") + kToken}})->status, 200);
  // Opened once with the token in the URL: a cookie that scripts cannot read and other sites
  // do not send, and the token out of the address bar.
  const auto r = c.Get((std::string("/?token=") + kToken).c_str());
  ASSERT_EQ(r->status, 303);
  const std::string cookie = r->get_header_value("Set-Cookie");
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
  EXPECT_EQ(r->get_header_value("Location"), "/");
  EXPECT_EQ(c.Get("/api/status", {{"Cookie", cookie.substr(0, cookie.find(';'))}})->status, 200);
  EXPECT_EQ(d.stop(), 0) << d.err();
}

TEST_F(DashboardTest, RefusesToListenBeyondLoopbackWithoutAToken) {
  Outcome r = run_crier(dir, {"dashboard", path, "--listen", "0.0.0.0:0"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("refusing to listen on 0.0.0.0 without a token"), std::string::npos) << r.err;
  r = run_crier(dir, {"dashboard", path, "--listen", "127.0.0.1:0", "--token", "short"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("at least 16"), std::string::npos) << r.err;
  r = run_crier(dir, {"dashboard", path, "--listen", "127.0.0.1"});
  EXPECT_EQ(r.code, 2);
  r = run_crier(dir, {"dashboard", dir.file("missing.db")});
  EXPECT_EQ(r.code, 3);
  EXPECT_FALSE(std::filesystem::exists(dir.file("missing.db")));
}

TEST_F(DashboardTest, AReadOnlyDashboardChangesNothing) {
  const std::string before = read_file(path);
  Dashboard d(dir, path, {"--read-only"});
  auto c = d.client();
  EXPECT_EQ(status_of(c)["totals"]["dead_letters"], 4);
  const auto r = c.Post("/api/dead-letters/purge", kAction, R"({"all": true})", "application/json");
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("--read-only"), std::string::npos);
  EXPECT_EQ(d.stop(), 0) << d.err();
  EXPECT_EQ(read_file(path), before);
}

// The page in a real browser: the numbers it shows are the store's; events published while
// it is open appear without a reload; a click on Redrive and an edit in the page's editor
// change the store.
TEST_F(DashboardTest, InHeadlessChromiumThePageShowsTheStoreLiveAndRepairsDeadLetters) {
  const std::filesystem::path modules = CRIER_NODE_MODULES;
  if (!std::filesystem::exists(modules / "puppeteer-core"))
    GTEST_SKIP() << "npm package puppeteer-core is not installed in " << modules
                 << " (npm could not reach its registry when scripts/test ran): the page was not tested in a browser";
  const char* chromium = std::getenv("CRIER_CHROMIUM") ? std::getenv("CRIER_CHROMIUM") : "/usr/bin/chromium";
  if (!std::filesystem::exists(chromium))
    GTEST_SKIP() << chromium << " is not installed (Debian package chromium): the page was not tested in a browser";

  Dashboard d(dir, path);
  const nlohmann::json plan = {{"url", d.url()},
                               {"chromium", chromium},
                               {"crier", CRIER_CLI},
                               {"store", path},
                               {"type", job},
                               {"screenshot", CRIER_SCREENSHOT},
                               {"expect", {{"events", 24}, {"dead_letters", 4}, {"audit_lag", 20}}}};
  std::ofstream(dir.file("plan.json")) << plan.dump();
  const std::string command = "NODE_PATH='" + modules.string() + "' node '" CRIER_BROWSER_SCRIPT "' '" +
                              dir.file("plan.json") + "' > '" + dir.file("node.out") + "' 2>&1";
  const int rc = std::system(command.c_str());
  const std::string out = read_file(dir.file("node.out"));
  ASSERT_EQ(rc, 0) << out;
  const auto report = nlohmann::json::parse(out.substr(out.rfind("{\"chromium\"")));
  std::printf("[ figure ] dashboard in %s: %s\n", report["chromium"].get<std::string>().c_str(),
              report["steps"].dump().c_str());
  EXPECT_EQ(d.stop(), 0) << d.err();

  // The clicks reached the store: both letters are gone, one back as it was, one edited.
  auto store = crier::sqlite::open(path);
  std::vector<std::uint64_t> left;
  for (const auto& l : store->dead_letter_queue().list({})) left.push_back(l.id);
  EXPECT_EQ(left.size(), 2u);
  for (const char* key : {"redriven", "edited"})
    EXPECT_EQ(std::count(left.begin(), left.end(), report[key].get<std::uint64_t>()), 0) << key;
  std::vector<std::string> notes;
  std::mutex mu;
  {
    crier::Bus bus{store};
    auto billing = bus.subscribe<Job>("billing", [&](const Job& j) {
      std::lock_guard lock(mu);
      notes.push_back(j.note);
    });
    ASSERT_TRUE(bus.drain(std::chrono::seconds(30)).complete);
  }
  std::sort(notes.begin(), notes.end());
  EXPECT_EQ(notes, (std::vector<std::string>{"edited in the browser", "job 5", "live 1", "live 2", "live 3"}));
}
