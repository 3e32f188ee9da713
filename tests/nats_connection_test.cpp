// The NATS transport's link in the bus's error hook and metrics: a server that goes away and
// comes back is reported both ways, counted, and shown in the Prometheus exposition; one that
// cannot be reached is an error in words. Credentials and TLS reach the server: a server that
// asks for them lets the bus in with the right ones and refuses it, in words, without.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <crier/nats.hpp>
#include <crier/open.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "durable_events.hpp"
#include "nats_credentials.hpp"
#include "nats_server.hpp"

using namespace test;

TEST(NatsConnection, ALostAndRegainedServerIsReportedAndCounted) {
  NatsServer server;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<crier::Report::Kind> kinds;
  std::string last_message;
  crier::BusOptions bus_options;
  bus_options.on_error = [&](const crier::Report& r) {
    std::lock_guard lock(mu);
    kinds.push_back(r.kind);
    last_message = std::string(r.message);
    cv.notify_all();
  };
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "LINK";
  o.subject_prefix = "link";
  crier::Bus bus{crier::nats::connect(o), bus_options};
  auto wait_for = [&](std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return kinds.size() >= n; });
  };

  auto m = bus.metrics();
  EXPECT_EQ(m.transport, "nats");
  EXPECT_TRUE(m.transport_health.connected);
  EXPECT_EQ(m.transport_health.server, server.url());
  EXPECT_NE(crier::to_prometheus(m).find("crier_transport_connected{transport=\"nats\"} 1\n"), std::string::npos);

  server.stop(SIGKILL);
  ASSERT_TRUE(wait_for(1)) << "no report of the lost connection";
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(kinds.front(), crier::Report::Kind::connection_lost);
    EXPECT_NE(last_message.find("connection to " + server.url() + " lost"), std::string::npos) << last_message;
  }
  m = bus.metrics();
  EXPECT_FALSE(m.transport_health.connected);
  EXPECT_EQ(m.transport_health.disconnects, 1u);
  EXPECT_NE(crier::to_prometheus(m).find("crier_transport_connected{transport=\"nats\"} 0\n"), std::string::npos);

  server.start();
  ASSERT_TRUE(wait_for(2)) << "no report of the connection regained";
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(kinds.at(1), crier::Report::Kind::connection_restored);
  }
  m = bus.metrics();
  EXPECT_TRUE(m.transport_health.connected);
  EXPECT_EQ(m.transport_health.reconnects, 1u);
  const std::string text = crier::to_prometheus(m);
  EXPECT_NE(text.find("crier_transport_reconnects_total{transport=\"nats\"} 1\n"), std::string::npos) << text;
  bus.publish(Job{1, "after the server came back"});  // the link works again
}

namespace {

// Bytes that arrived at the server listening on `port` (loopback, IPv4) and that it has not
// read yet, from the kernel's table of TCP sockets.
std::size_t unread_at_server(int port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the heading
  char at[16];                // the local address's end: ":PORT" in hex
  std::snprintf(at, sizeof at, ":%04X", static_cast<unsigned>(port));
  std::size_t unread = 0;
  char local[64], remote[64], state[8], queues[40];
  while (std::getline(table, line))
    if (std::sscanf(line.c_str(), "%*s %63s %63s %7s %39s", local, remote, state, queues) == 4 &&
        std::string_view(local).ends_with(at) && std::string_view(state) == "01")
      unread += std::strtoul(std::strchr(queues, ':') + 1, nullptr, 16);
  return unread;
}

}  // namespace

// A publish whose connection is lost before its acknowledgement came is sent again as soon as
// a connection is back, not after its try's 2 s: with a publish timeout shorter than a try, a
// single publish and a batch still succeed when the server they wait on is killed (before,
// they failed at the timeout, and the demo's services on a node taken out in a rolling upgrade
// stalled 2 s). The bus has two servers, each with the stream, so that the next connection
// does not wait for a restart.
TEST(NatsConnection, APublishCutOffByALostConnectionIsSentAgainOnTheNext) {
  NatsServer a, b;
  crier::nats::Options o;
  o.stream = "CUT";
  o.subject_prefix = "cut";
  o.publish_timeout = std::chrono::milliseconds(1900);
  for (const NatsServer* server : {&a, &b}) {  // the stream on each
    o.servers = {server->url()};
    (void)crier::nats::connect(o);
  }
  o.servers = {a.url(), b.url()};
  crier::Bus bus{crier::nats::connect(o)};
  for (const bool batch : {false, true}) {
    const std::string connected = bus.metrics().transport_health.server;
    NatsServer& server = connected == a.url() ? a : b;
    ASSERT_EQ(connected, server.url());
    ASSERT_EQ(::kill(server.pid(), SIGSTOP), 0);
    std::atomic<bool> published{false}, over{false};
    std::string failure;
    std::thread publisher([&] {
      try {
        if (batch)
          bus.publish_batch(std::vector<Job>{{2, "b"}, {3, "c"}});
        else
          bus.publish(Job{1, "a"});
        published = true;
      } catch (const crier::Error& e) {
        failure = e.what();
      }
      over = true;
    });
    while (!over && unread_at_server(server.port()) == 0) std::this_thread::yield();  // it is on its way
    server.kill();  // with the publish unanswered: the bus goes on with the other server
    publisher.join();
    EXPECT_TRUE(published) << (batch ? "a batch: " : "one event: ") << failure;
    server.start();  // for the next round
  }
}

namespace {

// The body of GET `path` from 127.0.0.1:`port` (HTTP/1.0: the server closes when it is sent).
std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(static_cast<std::uint16_t>(port));
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) response.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  const auto body = response.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : response.substr(body + 4);
}

}  // namespace

// The server's operators see the bus's connection under the name it was given (nats-server's
// monitoring, as `nats server report connections` reads it), "crier" when none was.
TEST(NatsConnection, TheServerShowsTheConnectionUnderItsName) {
  const int monitor = free_port();
  NatsServer::Node node;
  node.config = "http: 127.0.0.1:" + std::to_string(monitor);
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "NAMES";
  o.subject_prefix = "names";
  o.connection_name = "billing-worker-7";
  auto named = crier::nats::connect(o);
  o.connection_name.clear();
  auto unnamed = crier::nats::connect(o);
  const auto connz = nlohmann::json::parse(http_get(monitor, "/connz"), nullptr, false);
  ASSERT_TRUE(connz.is_object()) << "no answer from the server's monitoring port";
  std::vector<std::string> names;
  for (const auto& c : connz.at("connections")) names.push_back(c.value("name", ""));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"billing-worker-7", "crier"}));
}

TEST(NatsConnection, AnEmbeddedBusHasNoTransportMetrics) {
  crier::Bus bus;
  const auto m = bus.metrics();
  EXPECT_TRUE(m.transport.empty());
  EXPECT_EQ(crier::to_prometheus(m).find("crier_transport_"), std::string::npos);
}

// A server that cannot be reached, or that takes the connection and never answers as NATS
// does (a stuck one, another protocol's), is an error that says so and where, not cnats's
// source line.
TEST(NatsConnection, AServerThatIsDownOrSilentIsAClearErrorThatSaysWhere) {
  const RefusingPort nothing;
  const SilentPort silent;
  crier::nats::Options o;
  o.publish_timeout = std::chrono::milliseconds(300);
  for (const auto& [port, says] : {std::pair{nothing.port(), "nothing answers there (tried for 300 ms)"},
                                   std::pair{silent.port(), "no NATS server answered within 2000 ms"}}) {
    o.servers = {"nats://127.0.0.1:" + std::to_string(port)};
    try {
      (void)crier::nats::connect(o);
      ADD_FAILURE() << "connected to " << o.servers[0];
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      EXPECT_NE(std::string(e.what()).find("cannot connect to " + o.servers[0] + ": " + says), std::string::npos)
          << e.what();
    }
  }
}

// The commonest mistake: a server started without -js. It is said as such, from what the
// server says of itself, without waiting for the publish timeout (10 minutes here: the test
// would time out); a server that runs JetStream in a cluster is waited for as in an election.
TEST(NatsConnection, AServerWithoutJetStreamIsSaidAtOnce) {
  NatsServer::Node node;
  node.jetstream = false;
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  o.publish_timeout = std::chrono::minutes(10);
  try {
    (void)crier::nats::connect(o);
    ADD_FAILURE() << "a server without JetStream was taken";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    EXPECT_NE(std::string(e.what()).find("nats: stream CRIER: the server at " + server.url() +
                                         " runs no JetStream (its INFO says none), and no other server answered "
                                         "for it within 3000 ms: start nats-server with -js"),
              std::string::npos)
        << e.what();
  }
}

// A server at its max_connections answers a new client with an -ERR that cnats passes on, or,
// as the timing falls, loses ("Expected 'PONG', got ''"): said in the server's words either way.
TEST(NatsConnection, AServerAtItsMaxConnectionsIsSaidInItsWords) {
  NatsServer::Node node;
  node.config = "max_connections: 1\n";
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  const auto first = crier::nats::connect(o);
  try {
    (void)crier::nats::connect(o);
    ADD_FAILURE() << "a client beyond the server's max_connections was taken";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nats: cannot connect to " + server.url() +
                                         ": the server refuses this client: 'maximum connections exceeded' (its "
                                         "max_connections, or its account's or user's, is reached)"),
              std::string::npos)
        << e.what();
  }
}

// A server that ends the connection for a reason cnats does not reconnect after (here its
// max_subscriptions, reached by a second subscriber) is said as such, by the call that meets
// the closed connection and by a report, rather than as "Connection Closed" alone.
TEST(NatsConnection, AConnectionTheServerEndedIsSaidAsSuch) {
  NatsServer::Node node;
  node.config = "max_subscriptions: 4\n";
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "ENDED";
  o.subject_prefix = "ended";
  Reports reports;
  crier::Bus bus{crier::nats::connect(o), reports.bus_options()};
  const std::string said =
      "is closed for good: the server ended it with an error cnats does not reconnect after (a limit of the "
      "server's reached, such as its max_subscriptions";
  try {
    auto first = bus.subscribe<Job>("audit", [](const Job&) {});
    auto second = bus.subscribe<Job>("billing", [](const Job&) {});
    bus.publish(Job{1, "on a closed connection"});
    ADD_FAILURE() << "a connection the server ended carried on";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find(said), std::string::npos) << e.what();
  }
  const std::string report = reports.wait_for(crier::Report::Kind::connection_lost, said);
  EXPECT_NE(report.find("nothing is published or received until the transport is made again"), std::string::npos)
      << report;
  EXPECT_EQ(reports.count(crier::Report::Kind::connection_lost, "reconnecting"), 0u)
      << "a connection closed for good is not being reconnected";
}

namespace {

// A bus on `server` that publishes one event and has it handled, with the credentials in `o`.
void round_trip(crier::nats::Options o, const std::string& stream) {
  o.stream = stream;
  o.subject_prefix = "s" + stream;
  std::transform(o.subject_prefix.begin(), o.subject_prefix.end(), o.subject_prefix.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  crier::Bus bus{crier::nats::connect(o)};
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
  bus.publish(Job{1, "through " + stream});
  seen.wait_for(1);
  EXPECT_EQ(seen.values(), std::vector<int>{1});
}

// What connect() says when it cannot connect with `o` (empty when it could).
std::string refusal(crier::nats::Options o) {
  o.publish_timeout = std::chrono::seconds(5);
  try {
    (void)crier::nats::connect(o);
    return {};
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    return e.what();
  }
}

}  // namespace

TEST(NatsConnection, AUserAndPasswordOrATokenLetTheBusInAndWrongOnesAreRefusedInWords) {
  NatsServer::Node node;
  node.config = "authorization { user: crier, password: \"s3cret pass\" }";
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  std::string said = refusal(o);
  EXPECT_NE(said.find("cannot connect to " + server.url() + " with no credentials: Authorization Violation"),
            std::string::npos)
      << said;
  EXPECT_EQ(said.find("conn.c"), std::string::npos) << said;  // not cnats's source line
  o.user = "crier";
  o.password = "wrong";
  said = refusal(o);
  EXPECT_NE(said.find("with user crier and a password: Authorization Violation"), std::string::npos) << said;
  o.password = "s3cret pass";
  round_trip(o, "USERS");

  NatsServer::Node token_node;
  token_node.config = "authorization { token: \"t0ken\" }";
  NatsServer token_server(token_node);
  crier::nats::Options t;
  t.servers = {token_server.url()};
  t.token = "not it";
  said = refusal(t);
  EXPECT_NE(said.find("with a token: Authorization Violation"), std::string::npos) << said;
  t.token = "t0ken";
  round_trip(t, "TOKENS");

  // Credentials in a URL are never shown: not in errors, not in the link's health.
  crier::nats::Options u;
  u.servers = {"nats://crier:wr0ng-pw@127.0.0.1:" + std::to_string(server.port())};
  said = refusal(u);
  EXPECT_NE(said.find("cannot connect to nats://crier:***@127.0.0.1:"), std::string::npos) << said;
  EXPECT_EQ(said.find("wr0ng-pw"), std::string::npos) << said;
  u.servers = {"nats://t0ken@127.0.0.1:" + std::to_string(token_server.port())};
  u.stream = "URLS";
  u.subject_prefix = "urls";
  const auto transport = crier::nats::connect(u);
  EXPECT_EQ(transport->health().server, "nats://***@127.0.0.1:" + std::to_string(token_server.port()));
}

// A server user without publish rights to $JS.ACK.> has every acknowledgement dropped, refused
// in the server's log only: every event came back after AckWait for ever, and the program heard
// nothing. Subscribing says so now, with the rights a bus needs; with them, the bus works.
TEST(NatsConnection, AUserWhoMayNotAcknowledgeIsToldAtSubscribeWhichRightsABusNeeds) {
  const std::string rights = R"("$JS.API.>", "perm.>", "perm-redrive.>", "perm-dlq.>", "perm-attempts.>")";
  NatsServer::Node node;
  node.config =
      "authorization { users = [\n"
      "  { user: noack, password: pw, permissions: { publish: [" +
      rights +
      "], subscribe: [\"_INBOX.>\"] } },\n"
      "  { user: full, password: pw, permissions: { publish: [\"$JS.ACK.>\", " +
      rights + "], subscribe: [\"_INBOX.>\"] } } ] }";
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "PERM";
  o.subject_prefix = "perm";
  o.user = "noack";
  o.password = "pw";
  {
    crier::Bus bus{crier::nats::connect(o)};
    bus.publish(Job{1, "stored"});  // publishing needs no right to acknowledge
    try {
      auto sub = bus.subscribe<Job>("billing", [](const Job&) {});
      ADD_FAILURE() << "subscribed without the right to acknowledge";
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      const std::string what = e.what();
      EXPECT_NE(what.find("may not publish to $JS.ACK.> (the server said: Permissions Violation for Publish to"),
                std::string::npos)
          << what;
      EXPECT_NE(what.find("A bus needs publish rights to $JS.API.>, $JS.ACK.>, perm.>, perm-redrive.>, perm-dlq.> "
                          "and perm-attempts.>, and subscribe rights to _INBOX.>"),
                std::string::npos)
          << what;
    }
  }
  o.user = "full";
  crier::Bus bus{crier::nats::connect(o)};
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
  seen.wait_for(1);
  EXPECT_EQ(seen.values(), std::vector<int>{1});
}

// The server refuses other rights asynchronously too, and drops what it refused: a publish to
// a subject the user may not publish to waited for publish_timeout and then said only that
// nothing acknowledged it; connecting without rights to the JetStream API or the inboxes said
// that JetStream did not answer. Each now fails at once, naming the subject and the rights.
TEST(NatsConnection, ARightTheServerRefusesFailsTheCallAtOnceNamingIt) {
  const std::string others = R"("$JS.ACK.>", "perm-redrive.>", "perm-dlq.>", "perm-attempts.>")";
  NatsServer::Node node;
  node.config =
      "authorization { users = [\n"
      "  { user: nopub, password: pw, permissions: { publish: [\"$JS.API.>\", " +
      others +
      "], subscribe: [\"_INBOX.>\"] } },\n"
      "  { user: noapi, password: pw, permissions: { publish: [\"perm.>\", " +
      others +
      "], subscribe: [\"_INBOX.>\"] } },\n"
      "  { user: noinbox, password: pw, permissions: { publish: \">\", subscribe: [\"elsewhere.>\"] } } ] }";
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  o.stream = "PERM";
  o.subject_prefix = "perm";
  o.password = "pw";
  o.publish_timeout = std::chrono::seconds(60);  // what the calls no longer wait for
  const std::string rights =
      "A bus needs publish rights to $JS.API.>, $JS.ACK.>, perm.>, perm-redrive.>, perm-dlq.> and perm-attempts.>, "
      "and subscribe rights to _INBOX.>";
  // Runs `call`, which must throw transport_error well before the publish timeout; its text.
  const auto refusal = [&](const std::function<void()>& call) -> std::string {
    const auto start = std::chrono::steady_clock::now();
    try {
      call();
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30)) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "not refused";
    return {};
  };

  o.user = "nopub";
  crier::Bus bus{crier::nats::connect(o)};  // it may use the API
  const std::string subject = "perm." + std::string(crier::event_type_v<Job>);
  for (const bool many : {false, true}) {
    const std::string said = refusal([&] {
      if (many)
        bus.publish_batch(std::vector<Job>{{1, "a"}, {2, "b"}, {3, "c"}});
      else
        bus.publish(Job{1, "a"});
    });
    EXPECT_NE(said.find(" not stored: the server's user for this connection may not publish to " + subject +
                        " (the server said: Permissions Violation for Publish to \"" + subject + "\"). " + rights),
              std::string::npos)
        << said;
  }

  o.user = "noapi";
  std::string said = refusal([&] { (void)crier::nats::connect(o); });
  EXPECT_NE(said.find("may not publish to $JS.API.STREAM.INFO.PERM (the server said: Permissions Violation for "
                      "Publish to \"$JS.API.STREAM.INFO.PERM\"). " +
                      rights),
            std::string::npos)
      << said;

  o.user = "noinbox";
  said = refusal([&] { (void)crier::nats::connect(o); });
  EXPECT_NE(said.find("may not subscribe to _INBOX."), std::string::npos) << said;
  EXPECT_NE(said.find("where the answers come (the server said: Permissions Violation for Subscription to \"_INBOX."),
            std::string::npos)
      << said;
}

namespace {

void sh(const std::string& command) { ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command; }

// A certificate authority of the test's own, and certificates it signed: the server's (for
// `server_names`, a subjectAltName: 127.0.0.1 unless said) and a client's, as an operator would
// make them.
struct Certificates {
  ScratchDir dir{"crier-tls"};
  std::string file(const std::string& name) const { return dir.file(name); }
  explicit Certificates(const std::string& server_names = "IP:127.0.0.1") {
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh("openssl req -x509 " + key + " -days 1 -subj /CN=crier-test-ca -keyout " + file("ca.key") + " -out " +
       file("ca.pem"));
    for (const std::string who : {"server", "client"}) {
      sh("openssl req " + key + " -subj /CN=" + who + " -keyout " + file(who + ".key") + " -out " + file(who + ".csr"));
      std::ofstream(dir / (who + ".ext"))
          << "subjectAltName=" << (who == "server" ? server_names : "IP:127.0.0.1") << "\n";
      sh("openssl x509 -req -days 1 -in " + file(who + ".csr") + " -CA " + file("ca.pem") + " -CAkey " +
         file("ca.key") + " -CAcreateserial -extfile " + file(who + ".ext") + " -out " + file(who + ".pem"));
    }
  }
};

}  // namespace

// Mutual TLS: the server proves itself with a certificate of the bus's authority, the bus with
// its client certificate. A server the bus does not trust, and a bus without its certificate,
// are refused in words.
TEST(NatsConnection, TlsWithTheServersAuthorityAndAClientCertificateCarriesTheBus) {
  const Certificates certs;
  NatsServer::Node node;
  node.config = "tls { cert_file: \"" + certs.file("server.pem") + "\", key_file: \"" + certs.file("server.key") +
                "\", ca_file: \"" + certs.file("ca.pem") + "\", verify: true }";
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {"tls://127.0.0.1:" + std::to_string(server.port())};
  o.tls_cert_file = certs.file("client.pem");
  o.tls_key_file = certs.file("client.key");
  std::string said = refusal(o);  // the server's authority not trusted
  EXPECT_NE(said.find("cannot connect to tls://127.0.0.1:" + std::to_string(server.port())), std::string::npos) << said;
  EXPECT_NE(said.find("SSL handshake error: 20:unable to get local issuer certificate"), std::string::npos) << said;

  o.tls_ca_file = certs.file("ca.pem");
  round_trip(o, "SECURE");

  crier::nats::Options without = o;  // no client certificate: the server refuses the bus
  without.tls_cert_file.clear();
  without.tls_key_file.clear();
  said = refusal(without);
  EXPECT_NE(said.find("cannot connect to tls://127.0.0.1"), std::string::npos) << said;
  EXPECT_NE(said.find("does it want a client certificate? none was given"), std::string::npos) << said;
}

// A server whose certificate names it by a host name the bus does not dial (here the bus
// dials 127.0.0.1): refused, saying which option helps, unless the bus is told that name.
TEST(NatsConnection, AServerCertifiedForAnotherHostNameIsTrustedOnlyWhenThatNameIsExpected) {
  const Certificates certs("DNS:nats.internal");
  NatsServer::Node node;
  node.config =
      "tls { cert_file: \"" + certs.file("server.pem") + "\", key_file: \"" + certs.file("server.key") + "\" }";
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {"tls://127.0.0.1:" + std::to_string(server.port())};
  o.tls_ca_file = certs.file("ca.pem");
  std::string said = refusal(o);
  EXPECT_NE(said.find("cannot connect to tls://127.0.0.1:" + std::to_string(server.port()) +
                      " (its certificate names another host: tls_expected_hostname says which name to expect)"),
            std::string::npos)
      << said;
  o.tls_expected_hostname = "other.internal";
  said = refusal(o);
  EXPECT_NE(said.find("(its certificate does not name other.internal)"), std::string::npos) << said;
  o.tls_expected_hostname = "nats.internal";
  round_trip(o, "NAMED");
}

// Decentralized authentication: a server that trusts an operator lets in a bus whose
// credentials file holds a user its account signed, and refuses, in words naming the file, one
// from another operator, one that is not there and one that is not a credentials file.
TEST(NatsConnection, ACredentialsFileOfTheOperatorsUserCarriesTheBusAndOthersAreRefusedInWords) {
  const NatsCredentials ours, theirs;
  NatsServer::Node node;
  node.config = ours.server_config();
  NatsServer server(node);
  crier::nats::Options o;
  o.servers = {server.url()};
  std::string said = refusal(o);
  EXPECT_NE(said.find("with no credentials: Authorization Violation"), std::string::npos) << said;
  o.credentials_file = theirs.file("user.creds");
  said = refusal(o);
  EXPECT_NE(said.find("with the credentials file " + theirs.file("user.creds") + ": Authorization Violation"),
            std::string::npos)
      << said;
  o.credentials_file = ours.file("missing.creds");
  said = refusal(o);
  EXPECT_NE(said.find("error opening file '" + o.credentials_file + "': No such file"), std::string::npos) << said;
  std::ofstream(ours.file("garbage.creds")) << "not a credentials file\n";
  o.credentials_file = ours.file("garbage.creds");
  said = refusal(o);
  EXPECT_NE(said.find("no nkey user seed found in '" + o.credentials_file + "'"), std::string::npos) << said;
  o.credentials_file = ours.file("user.creds");
  round_trip(o, "CREDS");
}

// JetStream domains: a program connected to a leaf node reaches the streams of the hub's
// domain through `$JS.<domain>.API`, publishing and consuming across the leaf connection,
// and makes no stream in the leaf's own JetStream. A domain nothing answers for is said with
// its name; one that is not a subject token is refused before any request.
TEST(NatsConnection, ABusOnALeafNodeUsesTheStreamsOfTheDomainItNames) {
  const int leaf_port = free_port();
  NatsServer::Node hub_node;
  hub_node.name = "hub";
  hub_node.jetstream_domain = "hub";
  hub_node.config = "leafnodes { listen: 127.0.0.1:" + std::to_string(leaf_port) + " }";
  NatsServer hub(hub_node);
  NatsServer::Node leaf_node;
  leaf_node.name = "leaf";
  leaf_node.jetstream_domain = "edge";
  leaf_node.config = "leafnodes { remotes [ { url: \"nats-leaf://127.0.0.1:" + std::to_string(leaf_port) + "\" } ] }";
  NatsServer leaf(leaf_node);

  crier::nats::Options o;
  o.servers = {leaf.url()};
  o.domain = "hub";
  o.stream = "INHUB";
  o.subject_prefix = "inhub";
  {
    // The leaf connection may not be up yet: requests meet no responders until it is, and are retried.
    crier::Bus bus{crier::nats::connect(o)};
    SeenJobs seen;
    auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
    bus.publish(Job{1, "from the edge"});
    bus.publish(Job{2, "from the edge"});
    seen.wait_for(2);
    EXPECT_EQ(seen.values(), (std::vector<int>{1, 2}));
    EXPECT_EQ(bus.metrics().transport_health.server, leaf.url());
  }

  crier::nats::register_scheme();
  auto opened_at = [](const std::string& target) -> std::string {
    try {
      (void)crier::open_transport(target);
      return "opened";
    } catch (const crier::Error& e) {
      return crier::to_string(e.code());
    }
  };
  EXPECT_EQ(opened_at(hub.url() + "/INHUB"), "opened");  // the hub's own JetStream has it
  EXPECT_EQ(opened_at(leaf.url() + "/INHUB?domain=hub"), "opened");
  EXPECT_EQ(opened_at(leaf.url() + "/INHUB?prefix=inhub&domain=edge"), "not_found");  // not in the leaf's
  EXPECT_EQ(opened_at(leaf.url() + "/INHUB?region=hub"), "invalid_argument");

  o.domain = "nowhere";
  o.publish_timeout = std::chrono::seconds(2);
  std::string said = refusal(o);
  EXPECT_NE(said.find("no responders: no JetStream of domain nowhere reachable from this server"), std::string::npos)
      << said;
  o.domain = "hub.east";
  try {
    (void)crier::nats::connect(o);
    ADD_FAILURE() << "a domain of two tokens was taken";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::invalid_name);
    EXPECT_NE(std::string(e.what()).find("JetStream domain 'hub.east' is not"), std::string::npos) << e.what();
  }
}
