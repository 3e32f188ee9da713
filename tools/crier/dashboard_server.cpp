#include "dashboard_server.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cctype>

#include "dashboard_assets.hpp"

namespace crier::cli {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxBody = 1 << 20;
constexpr std::size_t kMaxPage = 200;
constexpr std::size_t kDataShown = 500;
const char* const kActionHeader = "X-Crier-Action";
const char* const kCookie = "crier_token";

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(json_text(body), "application/json");
}

void refuse(httplib::Response& res, int status, const std::string& why) { reply(res, status, {{"error", why}}); }

// Compares without leaving the token's length of common prefix in the time taken.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

std::string cookie_value(const httplib::Request& req, const std::string& name) {
  const std::string cookies = req.get_header_value("Cookie");
  std::size_t at = 0;
  while (at < cookies.size()) {
    std::size_t end = cookies.find(';', at);
    if (end == std::string::npos) end = cookies.size();
    std::string pair = cookies.substr(at, end - at);
    pair.erase(0, pair.find_first_not_of(' '));
    if (pair.rfind(name + "=", 0) == 0) return pair.substr(name.size() + 1);
    at = end + 1;
  }
  return {};
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::uint64_t number_param(const httplib::Request& req, const char* name, std::uint64_t fallback, std::uint64_t most) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  if (v.empty() || v.size() > 12 || !std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); }))
    throw Failure(usage, std::string("parameter ") + name + " must be a whole number, not '" + v + "'");
  return std::min<std::uint64_t>(std::stoull(v), most);
}

// The dead letters a redrive or purge request names: {"ids": [..]} or {"all": true} with an
// optional subscriber and type.
DeadLetterFilter selection_of(const json& body) {
  DeadLetterFilter f;
  if (!body.is_object()) throw Failure(usage, "the body must be a JSON object");
  f.subscriber = body.value("subscriber", std::string());
  f.event_type = body.value("type", std::string());
  if (body.contains("ids")) {
    if (!body["ids"].is_array() || body["ids"].empty())
      throw Failure(usage, "ids must be a non-empty array of dead letter ids");
    for (const auto& id : body["ids"]) {
      if (!id.is_number_unsigned()) throw Failure(usage, "ids must be dead letter ids (whole numbers)");
      f.ids.push_back(id.get<std::uint64_t>());
    }
  } else if (!body.value("all", false)) {
    throw Failure(usage, "say which dead letters: \"ids\": [..] or \"all\": true");
  }
  return f;
}

}  // namespace

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

struct DashboardServer::Impl {
  Impl(std::shared_ptr<Transport> bus, BusWatch& watch, Options options)
      : bus(std::move(bus)), watch(watch), options(std::move(options)) {}

  std::shared_ptr<Transport> bus;
  BusWatch& watch;
  const Options options;
  httplib::Server server;
  int port = 0;
  std::atomic<bool> stopping{false};

  // The Host headers a browser sends for this server. Others are refused: a page elsewhere
  // that rebinds its own name to 127.0.0.1 must not reach the API (DNS rebinding).
  bool host_allowed(const std::string& host_header) const {
    if (!is_loopback(options.host)) return true;  // a token guards it instead
    const std::string p = ":" + std::to_string(port);
    for (const char* name : {"127.0.0.1", "localhost", "[::1]"})
      if (host_header == name + p) return true;
    return host_header == options.host + p;
  }

  httplib::Server::HandlerResponse admit(const httplib::Request& req, httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    if (!host_allowed(req.get_header_value("Host"))) {
      refuse(res, 403, "this dashboard answers to http://" + options.host + ":" + std::to_string(port) + " only");
      return R::Handled;
    }
    if (!options.token.empty()) {
      const std::string auth = req.get_header_value("Authorization");
      const bool bearer = auth.rfind("Bearer ", 0) == 0 && same_secret(auth.substr(7), options.token);
      if (!bearer && !same_secret(cookie_value(req, kCookie), options.token)) {
        if (req.method == "GET" && req.path == "/" && same_secret(req.get_param_value("token"), options.token)) {
          // The token from the URL goes into a cookie no script can read and no other site
          // sends, and out of the address bar.
          res.set_header("Set-Cookie",
                         std::string(kCookie) + "=" + options.token + "; Path=/; HttpOnly; SameSite=Strict");
          res.set_redirect("/", 303);
          return R::Handled;
        }
        refuse(res, 401, "a token is required: open /?token=TOKEN, or send Authorization: Bearer TOKEN");
        return R::Handled;
      }
    }
    if (req.method == "POST") {
      // Only the page's own script sends this header with JSON; a form or a foreign page
      // cannot without a CORS preflight, which is never answered.
      if (req.get_header_value(kActionHeader) != "1" ||
          req.get_header_value("Content-Type").rfind("application/json", 0) != 0) {
        refuse(res, 403, std::string("a change must be a JSON POST with the header ") + kActionHeader + ": 1");
        return R::Handled;
      }
      const std::string origin = req.get_header_value("Origin");
      if (!origin.empty() && origin != "http://" + req.get_header_value("Host")) {
        refuse(res, 403, "a change from another origin (" + origin + ") is refused");
        return R::Handled;
      }
      const std::string site = req.get_header_value("Sec-Fetch-Site");
      if (!site.empty() && site != "same-origin") {
        refuse(res, 403, "a change from another site is refused");
        return R::Handled;
      }
      if (options.read_only) {
        refuse(res, 403, "this dashboard was started with --read-only");
        return R::Handled;
      }
    } else if (req.method != "GET" && req.method != "HEAD") {
      refuse(res, 405, "method " + req.method + " is not served");
      return R::Handled;
    }
    return R::Unhandled;
  }

  void dead_letters(const httplib::Request& req, httplib::Response& res) {
    DeadLetterFilter f;
    f.subscriber = req.get_param_value("subscriber");
    f.event_type = req.get_param_value("type");
    const std::string text = lower(req.get_param_value("error"));
    const std::string since_text = req.get_param_value("since");
    const Timestamp since = since_text.empty() ? Timestamp{} : parse_when(since_text);
    const std::uint64_t offset = number_param(req, "offset", 0, UINT32_MAX);
    const std::uint64_t limit = number_param(req, "limit", 50, kMaxPage);
    std::vector<DeadLetter> letters = bus->dead_letter_queue().list(f);
    std::erase_if(letters, [&](const DeadLetter& l) {
      if (!since_text.empty() && l.last_failure < since) return true;
      return !text.empty() && lower(l.last_error).find(text) == std::string::npos &&
             lower(l.first_error).find(text) == std::string::npos;
    });
    json page = json::array();
    for (std::size_t i = offset; i < letters.size() && page.size() < limit; ++i)
      page.push_back(letter_json(letters[i], false, kDataShown));
    reply(res, 200, {{"total", letters.size()}, {"offset", offset}, {"letters", std::move(page)}});
  }

  void one_letter(const httplib::Request& req, httplib::Response& res) {
    DeadLetterFilter f;
    f.ids.push_back(std::stoull(req.matches[1]));
    const auto letters = bus->dead_letter_queue().list(f);
    if (letters.empty()) return refuse(res, 404, "no dead letter " + std::string(req.matches[1]));
    reply(res, 200, letter_json(letters.front(), true));
  }

  void change(const httplib::Request& req, httplib::Response& res, bool redrive) {
    const DeadLetterFilter f = selection_of(json::parse(req.body));
    DeadLetterQueue& dlq = bus->dead_letter_queue();
    const std::size_t n = redrive ? dlq.redrive(f) : dlq.purge(f);
    watch.look_now();
    reply(res, 200, {{redrive ? "redriven" : "purged", n}});
  }

  void edit(const httplib::Request& req, httplib::Response& res) {
    const json body = json::parse(req.body);
    if (!body.is_object() || !body.contains("data") || !body["data"].is_string())
      throw Failure(usage, "the body must be {\"data\": \"the edited data\"}");
    const std::uint64_t id = std::stoull(req.matches[1]);
    DeadLetterQueue& dlq = bus->dead_letter_queue();
    const auto letters = dlq.list({.ids = {id}});
    if (letters.empty()) return refuse(res, 404, "no dead letter " + std::to_string(id));
    const std::string data = body["data"].get<std::string>();
    check_edited_data(letters.front().envelope, data);
    dlq.redrive_edited(id, data);
    watch.look_now();
    reply(res, 200, {{"redriven", 1}});
  }

  void stream(httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    auto seen = std::make_shared<std::uint64_t>(0);
    res.set_chunked_content_provider("text/event-stream", [this, seen](std::size_t, httplib::DataSink& sink) {
      if (stopping.load()) return false;
      const std::uint64_t v = watch.wait_newer(*seen, std::chrono::seconds(15));
      if (stopping.load()) return false;
      std::string message = ": still here\n\n";  // keeps proxies and the browser from giving up
      if (v > *seen) {
        *seen = v;
        message = "event: snapshot\ndata: " + watch.snapshot_json() + "\n\n";
      }
      return sink.write(message.data(), message.size());
    });
  }

  void routes() {
    server.set_pre_routing_handler([this](const auto& req, auto& res) { return admit(req, res); });
    server.set_default_headers({
        {"Content-Security-Policy",
         "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
         "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
        {"X-Content-Type-Options", "nosniff"},
        {"Referrer-Policy", "no-referrer"},
        {"Cache-Control", "no-store"},
    });
    server.set_exception_handler([](const auto&, auto& res, std::exception_ptr ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const Failure& e) {
        refuse(res, e.code == not_found ? 404 : 400, e.what());
      } catch (const json::exception& e) {
        refuse(res, 400, std::string("the body is not the JSON expected: ") + e.what());
      } catch (const Error& e) {
        const bool caller = e.code() == Errc::invalid_argument || e.code() == Errc::invalid_name ||
                            e.code() == Errc::invalid_envelope || e.code() == Errc::codec_error;
        refuse(res, caller ? 400 : 503, e.what());
      } catch (const std::exception& e) {
        refuse(res, 500, e.what());
      }
    });
    server.Get(R"(/(|app\.js|app\.css|favicon\.svg))", [](const auto& req, auto& res) {
      const Asset* a = find_asset(req.path);
      if (!a) return refuse(res, 404, "no such page");
      res.set_content(std::string(a->body), std::string(a->content_type).c_str());
    });
    server.Get("/api/status",
               [this](const auto&, auto& res) { res.set_content(watch.snapshot_json(), "application/json"); });
    server.Get("/api/stream", [this](const auto&, auto& res) { stream(res); });
    server.Get("/api/dead-letters", [this](const auto& req, auto& res) { dead_letters(req, res); });
    server.Get(R"(/api/dead-letters/(\d{1,18}))", [this](const auto& req, auto& res) { one_letter(req, res); });
    server.Post("/api/dead-letters/redrive", [this](const auto& req, auto& res) { change(req, res, true); });
    server.Post("/api/dead-letters/purge", [this](const auto& req, auto& res) { change(req, res, false); });
    server.Post(R"(/api/dead-letters/(\d{1,18})/edit)", [this](const auto& req, auto& res) { edit(req, res); });
    server.Get("/metrics", [this](const auto&, auto& res) {
      res.set_content(watch.prometheus(), "text/plain; version=0.0.4; charset=utf-8");
    });
    server.set_error_handler([](const auto&, auto& res) {
      if (res.body.empty()) refuse(res, res.status, "nothing is served at this path");
    });
    server.set_payload_max_length(kMaxBody);
    server.set_keep_alive_timeout(2);
  }
};

DashboardServer::DashboardServer(std::shared_ptr<Transport> bus, BusWatch& watch, Options options)
    : impl_(std::make_unique<Impl>(std::move(bus), watch, std::move(options))) {
  const Options& o = impl_->options;
  if (!is_loopback(o.host) && o.token.empty())
    throw Failure(usage, "refusing to listen on " + o.host +
                             " without a token: give --token or CRIER_DASHBOARD_TOKEN (or listen on 127.0.0.1)");
  impl_->routes();
  if (o.port == 0) {
    impl_->port = impl_->server.bind_to_any_port(o.host);
    if (impl_->port < 0) throw Failure(failure, "cannot listen on " + o.host + ": no free port or no such address");
  } else {
    if (!impl_->server.bind_to_port(o.host, o.port))
      throw Failure(failure, "cannot listen on " + o.host + ":" + std::to_string(o.port) +
                                 ": the port is taken or the address is not this machine's");
    impl_->port = o.port;
  }
}

DashboardServer::~DashboardServer() = default;

int DashboardServer::port() const { return impl_->port; }

void DashboardServer::serve() { impl_->server.listen_after_bind(); }

void DashboardServer::stop() {
  impl_->stopping = true;
  impl_->watch.release_readers();
  impl_->server.stop();
}

}  // namespace crier::cli
