// crier dashboard BUS: the bus in a browser, live, with its dead letters to repair, and
// /metrics for Prometheus. Listens on 127.0.0.1 unless told otherwise; elsewhere only with
// a token.
#include <signal.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "bus_watch.hpp"
#include "commands.hpp"
#include "dashboard_server.hpp"

namespace crier::cli {

namespace {

struct DashboardArgs {
  std::string bus;
  std::string listen = "127.0.0.1:8080";
  std::string token;
  int interval_ms = 1000;
  bool read_only = false;
};

void run_dashboard(const DashboardArgs& a) {
  DashboardServer::Options o;
  const auto colon = a.listen.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw Failure(usage, "--listen wants HOST:PORT (127.0.0.1:8080), not '" + a.listen + "'");
  o.host = a.listen.substr(0, colon);
  if (o.host.size() > 2 && o.host.front() == '[' && o.host.back() == ']') o.host = o.host.substr(1, o.host.size() - 2);
  try {
    std::size_t used = 0;
    o.port = std::stoi(a.listen.substr(colon + 1), &used);
    if (used != a.listen.size() - colon - 1 || o.port < 0 || o.port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw Failure(usage, "--listen: '" + a.listen.substr(colon + 1) + "' is not a port (0..65535)");
  }
  o.token = a.token;
  if (o.token.empty())
    if (const char* t = std::getenv("CRIER_DASHBOARD_TOKEN")) o.token = t;
  if (!o.token.empty() &&
      (o.token.size() < 16 || o.token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                                        "opqrstuvwxyz0123456789-._~") != std::string::npos))
    throw Failure(usage, "the token must be at least 16 letters, digits or -._~ (try: openssl rand -hex 16)");
  o.read_only = a.read_only;
  if (a.interval_ms < 100 || a.interval_ms > 60'000) throw Failure(usage, "--interval wants 100..60000 ms");

  // SIGINT and SIGTERM are taken by a thread of their own (blocked everywhere else, before
  // any thread starts), which stops the server.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto bus = open_bus(a.bus, a.read_only);
  BusWatch::Options wo;
  wo.interval = std::chrono::milliseconds(a.interval_ms);
  BusWatch watch(bus, redacted_target(a.bus), wo);
  DashboardServer server(bus, watch, o);
  const std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::printf("crier dashboard: http://%s:%d/%s\n", host.c_str(), server.port(), o.token.empty() ? "" : "?token=...");
  std::fflush(stdout);

  std::mutex mu;
  std::condition_variable served;
  bool done = false;
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);  // a real signal, or the one below once serve() returned
    std::unique_lock lock(mu);
    // stop() before serve() began listening would not be seen: ask until serve() returns.
    while (!done) {
      server.stop();
      served.wait_for(lock, std::chrono::milliseconds(100));
    }
  });
  server.serve();
  {
    std::lock_guard lock(mu);
    done = true;
  }
  served.notify_all();
  pthread_kill(stopper.native_handle(), SIGTERM);  // when serve() failed without a signal
  stopper.join();
  std::fprintf(stderr, "crier dashboard: stopped\n");
}

}  // namespace

void add_dashboard(CLI::App& app) {
  auto args = std::make_shared<DashboardArgs>();
  auto* cmd = app.add_subcommand("dashboard",
                                 "A live page of the bus (topology, lag, dead letters with redrive, edit and "
                                 "purge, newest events) and /metrics for Prometheus, until Ctrl-C.");
  cmd->add_option("bus", args->bus, "the store file, or a transport URL")->required();
  cmd->add_option("--listen", args->listen,
                  "HOST:PORT to listen on (port 0: any free one); any address but loopback wants a token")
      ->capture_default_str();
  cmd->add_option("--token", args->token,
                  "required on every request (default: $CRIER_DASHBOARD_TOKEN); open /?token=TOKEN once");
  cmd->add_option("--interval", args->interval_ms, "milliseconds between looks at the bus")->capture_default_str();
  cmd->add_flag("--read-only", args->read_only, "open the bus read-only; no redrive, edit or purge");
  cmd->footer("Example: crier dashboard orders.db --listen 127.0.0.1:8080   (then open http://127.0.0.1:8080/)");
  cmd->callback([args] { run_dashboard(*args); });
}

}  // namespace crier::cli
