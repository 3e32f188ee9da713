// The Redis Streams transport against a real redis-server each test starts itself: the link
// (a server down, credentials, a unix socket, a lost and regained server, a write to a server
// that is gone, a group the server lost), events of every size and byte stored whole, a
// server SIGKILLed under load with appendfsync always, a consumer process SIGKILLed with
// events in hand, acknowledgements and reads cut off by a lost link, entries trimmed while
// pending, a server out of memory, the orders demo when Redis stops answering, and
// CloudEvents with redis-cli and the official CloudEvents SDK on the other side.
#include <gtest/gtest.h>

#include <signal.h>

#include <crier/redis.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "child_process.hpp"
#include "durable_events.hpp"
#include "redis_server.hpp"
#include "takeover.hpp"
#include "test_events.hpp"

using namespace test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Runs a shell command; its output (stdout and stderr). Throws when it fails.
std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) throw std::runtime_error("`" + command + "` failed (" + std::to_string(status) + "):\n" + out);
  return out;
}

std::string cli(const RedisServer& server, const std::string& args) {
  return run("redis-cli -p " + std::to_string(server.port()) + " " + args);
}

crier::redis::Options options(const RedisServer& server, std::string prefix) {
  crier::redis::Options o;
  o.url = server.url();
  o.prefix = std::move(prefix);
  return o;
}

TEST(RedisLink, AServerThatIsDownIsAClearErrorThatSaysWhere) {
  const RefusingPort nothing;
  const int port = nothing.port();
  crier::redis::Options o;
  o.url = "redis://127.0.0.1:" + std::to_string(port);
  o.timeout = 300ms;
  try {
    (void)crier::redis::connect(o);
    FAIL() << "connected to nothing";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(tried for "), std::string::npos) << e.what();
    EXPECT_EQ(test::occurrences(e.what(), "crier: "), 1u) << e.what();  // the link's error quoted bare
  }
  // One that takes the connection and never answers is said as such, not as errno's text.
  const SilentPort silent;
  o.url = "redis://127.0.0.1:" + std::to_string(silent.port());
  try {
    (void)crier::redis::connect(o);
    FAIL() << "connected to a server that never answers";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no answer within 300 ms"), std::string::npos) << e.what();
  }
}

TEST(RedisLink, BadOptionsAreRefusedInWords) {
  auto refused = [](crier::redis::Options o, crier::Errc code, const char* says) {
    try {
      (void)crier::redis::connect(o);
      ADD_FAILURE() << "accepted " << o.url << " prefix " << o.prefix;
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  crier::redis::Options o;
  o.url = "rediss://127.0.0.1:6380";
  refused(o, crier::Errc::invalid_argument, "TLS");
  o.url = "redis://127.0.0.1:notaport";
  refused(o, crier::Errc::invalid_argument, "port");
  o.url = "redis://127.0.0.1:99999";
  refused(o, crier::Errc::invalid_argument, "port 99999 is not 1 to 65535");
  o.url = "redis://[::1:6379";
  refused(o, crier::Errc::invalid_argument, "lacks its ']'");
  o.url = "redis://127.0.0.1:6379";
  o.prefix = "has:colon";
  refused(o, crier::Errc::invalid_name, "prefix");
}

TEST(RedisLink, AnAclUserLogsInAndAWrongPasswordIsRefusedInWords) {
  RedisServer server("everysec", "s3cret pass");
  crier::redis::Options o = options(server, "acl");
  o.user = "crier";
  o.password = "s3cret pass";
  crier::Bus bus{crier::redis::connect(o)};
  bus.publish(Job{1, "as user crier"});
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
  seen.wait_for(1);
  EXPECT_EQ(seen.values(), std::vector<int>{1});

  o.password = "wrong";
  try {
    (void)crier::redis::connect(o);
    FAIL() << "a wrong password was accepted";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused the credentials"), std::string::npos) << e.what();
  }
}

// A user whose ACL rules leave out a command crier sends, or the bus's keys: what is refused
// says so with the rules a bus's user needs (crier::redis::acl_rules, which the conformance
// suite runs under), not only Redis's NOPERM.
TEST(RedisLink, ACommandOrKeyTheAclRefusesIsSaidWithTheRulesABusNeeds) {
  const std::string rules = crier::redis::acl_rules("acl");
  EXPECT_TRUE(rules.starts_with("~acl:* -@all +ping ")) << rules;
  std::string without_xadd = rules;
  without_xadd.erase(without_xadd.find(" +xadd"), 6);
  RedisServer server("everysec", "",
                     "user noxadd on >pw " + without_xadd + "\nuser otherkeys on >pw ~other:* -@all +@all\n");
  const std::string hint =
      "(the server's ACL user for this connection may not: a bus's user needs the rules '" + rules + "')";
  crier::redis::Options o = options(server, "acl");
  o.user = "noxadd";
  o.password = "pw";
  {
    crier::Bus bus{crier::redis::connect(o)};
    try {
      bus.publish(Job{1, "not permitted"});
      ADD_FAILURE() << "a publish the ACL refuses was stored";
    } catch (const crier::Error& e) {
      EXPECT_NE(std::string(e.what()).find("NOPERM this user has no permissions to run the 'xadd' command " + hint),
                std::string::npos)
          << e.what();
    }
  }
  o.user = "otherkeys";
  try {
    crier::Bus bus{crier::redis::connect(o)};
    auto sub = bus.subscribe<Job>("billing", [](const Job&) {});
    ADD_FAILURE() << "a consumer group was made on keys the ACL refuses";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("NOPERM this user has no permissions to access one of the keys"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(hint), std::string::npos) << e.what();
  }
}

// A server without an append-only file would lose the events it acknowledged when it
// restarts: the tools (`crier status`, the dashboard) say so among the bus's notices.
TEST(RedisLink, AServerWithoutAnAppendOnlyFileIsNotedForTheTools) {
  RedisServer server;
  const auto transport = crier::redis::connect(options(server, "noaof"));
  EXPECT_EQ(transport->inspector().notices(), std::vector<std::string>{});
  (void)cli(server, "CONFIG SET appendonly no");
  const auto notices = transport->inspector().notices();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0], "the server at 127.0.0.1:" + std::to_string(server.port()) +
                            " keeps no append-only file (appendonly no): the events it stored since its last "
                            "snapshot, if it takes any, are lost when it restarts or crashes; give it appendonly yes");
}

// A server at its maxclients refuses a new connection: said with what takes connections.
TEST(RedisLink, AServerAtItsMaxclientsIsSaidWithWhatTakesConnections) {
  RedisServer server("everysec", "", "maxclients 1\n");
  const auto transport = crier::redis::connect(options(server, "few"));  // its one link
  auto consumer = transport->consume({.subscriber = "billing", .event_type = "com.example.test.job"});
  (void)consumer->fetch(10, 0ms);  // holds that link from now on
  try {
    crier::Bus{transport}.publish(Job{1, "x"});
    ADD_FAILURE() << "a publish had a connection beyond the server's maxclients";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ERR max number of clients reached (the server's maxclients: each "
                                         "subscriber of a bus holds a connection of its own"),
              std::string::npos)
        << e.what();
  }
}

// Redis used as a cache evicts any key at its memory limit, streams of unhandled events too.
TEST(RedisLink, AServerThatMayEvictAnyKeyIsRefusedUnlessTheProgramAcceptsIt) {
  RedisServer server;
  (void)cli(server, "CONFIG SET maxmemory 100mb");
  (void)cli(server, "CONFIG SET maxmemory-policy allkeys-lru");
  crier::redis::Options o = options(server, "evict");
  try {
    (void)crier::redis::connect(o);
    ADD_FAILURE() << "connected to a server that may evict the streams";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    const std::string said = e.what();
    EXPECT_NE(said.find("127.0.0.1:" + std::to_string(server.port())), std::string::npos) << said;
    EXPECT_NE(said.find("maxmemory 104857600 bytes, maxmemory-policy allkeys-lru"), std::string::npos) << said;
    EXPECT_NE(said.find("allow_eviction"), std::string::npos) << said;
  }
  o.allow_eviction = true;
  EXPECT_NO_THROW((void)crier::redis::connect(o));
  o.allow_eviction = false;
  (void)cli(server, "CONFIG SET maxmemory-policy volatile-lru");  // keys without expiry stay
  EXPECT_NO_THROW((void)crier::redis::connect(o));
  (void)cli(server, "CONFIG SET maxmemory-policy allkeys-lfu");
  (void)cli(server, "CONFIG SET maxmemory 0");  // no limit: nothing is evicted
  EXPECT_NO_THROW((void)crier::redis::connect(o));
}

// A Redis Cluster node took publishes, while every read failed with CROSSSLOT for ever (crier's
// keys lie in several hash slots): refused at connect, in words.
TEST(RedisLink, ARedisClusterNodeIsRefusedAtConnect) {
  // Its cluster bus port said: Redis takes the port plus 10,000 otherwise, past 65,535 from a
  // high free port.
  RedisServer server(
      "everysec", "",
      "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-port " + std::to_string(free_port()));
  try {
    (void)crier::redis::connect(options(server, "cluster"));
    ADD_FAILURE() << "connected to a cluster node";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    const std::string said = e.what();
    EXPECT_NE(said.find("the server at 127.0.0.1:" + std::to_string(server.port()) +
                        " is a Redis Cluster node (cluster_enabled:1), which crier does not support"),
              std::string::npos)
        << said;
    EXPECT_NE(said.find("CROSSSLOT"), std::string::npos) << said;
  }
}

TEST(RedisLink, AUnixSocketCarriesTheBus) {
  RedisServer server;
  crier::redis::Options o;
  o.url = "unix://" + server.socket();
  o.prefix = "sock";
  crier::Bus bus{crier::redis::connect(o)};
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
  bus.publish(Job{7, "over the socket"});
  seen.wait_for(1);
  EXPECT_EQ(seen.values(), std::vector<int>{7});
  EXPECT_EQ(bus.metrics().transport_health.server, server.socket());
}

TEST(RedisLink, ALostAndRegainedServerIsReportedAndCounted) {
  RedisServer server;
  Reports reports;
  crier::Bus bus{crier::redis::connect(options(server, "link")), reports.bus_options()};
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });  // reads all the time
  EXPECT_TRUE(bus.metrics().transport_health.connected);

  server.kill();
  const std::string lost = reports.wait_for(crier::Report::Kind::connection_lost);
  EXPECT_EQ(test::occurrences(lost, "127.0.0.1:" + std::to_string(server.port())), 1u) << lost;
  EXPECT_FALSE(bus.metrics().transport_health.connected);
  server.start();
  EXPECT_FALSE(reports.wait_for(crier::Report::Kind::connection_restored).empty()) << "no report of the link regained";
  bus.publish(Job{1, "after the server came back"});
  seen.wait_for(1);
  const auto m = bus.metrics();
  EXPECT_TRUE(m.transport_health.connected);
  EXPECT_GE(m.transport_health.disconnects, 1u);
  EXPECT_GE(m.transport_health.reconnects, 1u);
  EXPECT_NE(crier::to_prometheus(m).find("crier_transport_connected{transport=\"redis\"} 1\n"), std::string::npos);
}

// A server that closes idle connections (`timeout` in redis.conf, as managed Redis often sets;
// here CLIENT KILL, which does the same at once): the links idle in the bus's pool are gone.
// The next publish is stored once, on a new link, and nothing is reported lost: the server
// never went away (before, each pause longer than the server's timeout was reported as a lost
// and regained connection, and counted as one).
TEST(RedisLink, ALinkTheServerClosedWhileIdleIsReplacedWithoutAWord) {
  RedisServer server;
  Reports reports;
  crier::Bus bus{crier::redis::connect(options(server, "idle")), reports.bus_options()};
  bus.publish(Job{1, "before the pause"});
  (void)cli(server, "CLIENT KILL TYPE normal SKIPME yes");
  bus.publish(Job{2, "after the pause"});
  bus.publish_batch(std::vector<Job>{Job{3, "a batch"}, Job{4, "after the pause"}});
  EXPECT_EQ(cli(server, "XLEN idle:com.example.test.job"), "4\n");
  const auto health = bus.metrics().transport_health;
  EXPECT_TRUE(health.connected);
  EXPECT_EQ(health.disconnects, 0u);
  EXPECT_EQ(reports.count(crier::Report::Kind::connection_lost), 0u);
}

// Credentials rotated under a running bus: the server drops the links and refuses new ones
// until the bus is given the new password. Publishes fail at once saying so, the subscriber
// reports it and keeps trying; once the server accepts the bus again, both go on.
TEST(RedisLink, CredentialsRefusedUnderARunningBusAreSaidAndTheBusGoesOnWhenAccepted) {
  RedisServer server;
  Reports reports;
  crier::Bus bus{crier::redis::connect(options(server, "rotated")), reports.bus_options()};
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
  bus.publish(Job{1, "before"});
  seen.wait_for(1);
  cli(server, "CONFIG SET requirepass rotated");
  try {
    cli(server, "-a rotated --no-auth-warning CLIENT KILL TYPE normal");  // the links go; this one too
  } catch (const std::exception&) {
  }
  try {
    bus.publish(Job{2, "refused"});
    ADD_FAILURE() << "published with credentials the server refuses";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    EXPECT_NE(std::string(e.what()).find("refused the credentials: NOAUTH"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(reports.wait_for(crier::Report::Kind::transport_failed, "refused the credentials").empty());
  cli(server, "-a rotated --no-auth-warning CONFIG SET requirepass ''");
  bus.publish(Job{3, "accepted again"});
  seen.wait_for(2);
  EXPECT_EQ(seen.values(), (std::vector<int>{1, 3}));
}

// A write to a link whose server is gone raises SIGPIPE unless it is sent with MSG_NOSIGNAL,
// and SIGPIPE ends a process that left it at its default (hiredis writes with write(2): a
// run of the restart test died so). Here the second of a publish's chunked writes meets a
// killed server's reset: the publish fails in words, the process lives, and the
// application's SIGPIPE handling is as it was.
TEST(RedisLink, AWriteToAServerThatIsGoneIsAnErrorNotASignal) {
  struct sigaction before {};
  ASSERT_EQ(sigaction(SIGPIPE, nullptr, &before), 0);
  ASSERT_EQ(before.sa_handler, SIG_DFL) << "this test needs SIGPIPE at its default, where it ends the process";
  RedisServer server;
  crier::redis::Options o = options(server, "pipe");
  o.timeout = 500ms;
  crier::Bus bus{crier::redis::connect(o)};
  bus.publish(Job{0, "leaves a link open"});
  server.kill();

  const std::vector<Job> big(200, Job{1, std::string(4096, 'x')});  // 800 kB: many writes
  try {
    bus.publish_batch(big);
    FAIL() << "published to a server that is gone";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(server.port())), std::string::npos) << e.what();
  }
  struct sigaction after {};
  ASSERT_EQ(sigaction(SIGPIPE, nullptr, &after), 0);
  EXPECT_EQ(after.sa_handler, SIG_DFL);
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "a SIGPIPE was left pending";

  server.start();
  bus.publish_batch(big);  // a new link, once the server is back
}

TEST(RedisLink, AGroupTheServerLostIsMadeAgainAndSaid) {
  RedisServer server;
  Reports reports;
  crier::Bus bus{crier::redis::connect(options(server, "lost")), reports.bus_options()};
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
  bus.publish(Job{1, "before"});
  seen.wait_for(1);
  // As after a restart without persistence: the group is gone.
  (void)cli(server, "XGROUP DESTROY lost:com.example.test.job billing");
  const std::string said = reports.wait_for(crier::Report::Kind::connection_restored);
  EXPECT_NE(said.find("consumer group billing"), std::string::npos) << said;
  EXPECT_NE(said.find("made again"), std::string::npos) << said;
  bus.publish(Job{2, "after"});
  // Made again from the stream's start: the first event comes again (at least once).
  seen.wait_for(3);
  std::set<int> distinct;
  for (int n : seen.values()) distinct.insert(n);
  EXPECT_EQ(distinct, (std::set<int>{1, 2}));
}

// A failed attempt whose record Redis refuses (out of memory: maxmemory, with the default
// noeviction policy): the event is retried all the same, and the bus says the record was not
// made (before, it said nothing: a restart would have counted the attempts again from the
// last record).
TEST(RedisLink, AnAttemptRedisWillNotRecordIsReportedAndRetriedAllTheSame) {
  RedisServer server;
  Reports reports;
  crier::Bus bus{crier::redis::connect(options(server, "full")), reports.bus_options()};
  SeenJobs seen;
  std::atomic<int> calls{0};
  crier::SubscribeOptions so;
  so.retry.max_attempts = 2;
  so.retry.initial_delay = 10ms;
  auto sub = bus.subscribe<Job>(
      "billing",
      [&](const Job& j) {
        if (++calls == 1) {
          (void)cli(server, "CONFIG SET maxmemory 1");
          throw std::runtime_error("the first try fails");
        }
        (void)cli(server, "CONFIG SET maxmemory 0");
        seen.add(j);
      },
      so);
  bus.publish(Job{1, "x"});
  const std::string said = reports.wait_for(crier::Report::Kind::transport_failed, "cannot record attempt 1 of event");
  EXPECT_NE(said.find("OOM"), std::string::npos) << said;
  EXPECT_NE(said.find("it is retried all the same"), std::string::npos) << said;
  seen.wait_for(1);
  EXPECT_EQ(calls.load(), 2);
}

// The same CloudEvent published twice (a relay resending after a crash): stored twice
// without the guard, once with it.
TEST(RedisPublish, TheGuardStoresAnEventPublishedTwiceOnce) {
  RedisServer server;
  const crier::Envelope e =
      crier::new_envelope("com.example.test.job", R"({"n":1,"note":"twice"})", "application/json");
  for (const auto window : {0ms, 60000ms}) {
    crier::redis::Options o = options(server, window.count() ? "guarded" : "plain");
    o.dedup_window = window;
    const auto transport = crier::redis::connect(o);
    (void)transport->inspector().publish_json(e.to_json());
    (void)transport->inspector().publish_json(e.to_json());
    const auto stored = transport->inspector().browse({.event_type = "com.example.test.job"});
    EXPECT_EQ(stored.size(), window.count() ? 1u : 2u) << "dedup_window " << window.count() << " ms";
  }
}

// A key of another kind where an event type's stream goes (another program's key under the
// bus's prefix): the publish is refused naming the key, not only Redis's WRONGTYPE; with the
// key out of the way, it is stored.
TEST(RedisPublish, AKeyOfAnotherKindWhereAStreamGoesIsRefusedNamingIt) {
  RedisServer server;
  (void)cli(server, "SET clash:com.example.test.job not-a-stream");
  const auto transport = crier::redis::connect(options(server, "clash"));
  crier::Bus bus{transport};
  try {
    bus.publish(Job{1, "refused"});
    FAIL() << "stored in a key that is not a stream";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("(stream clash:com.example.test.job) was refused: WRONGTYPE"),
              std::string::npos)
        << e.what();
  }
  (void)cli(server, "DEL clash:com.example.test.job");
  bus.publish(Job{2, "stored"});
  EXPECT_EQ(transport->inspector().browse({.event_type = "com.example.test.job"}).size(), 1u);
}

// Commands go out in chunks of about 16 KiB as they are encoded: a batch of events of every
// size (empty, one byte, past a chunk, past several), whose data holds every byte value and
// line ends, is stored whole and in order.
TEST(RedisPublish, EventsOfAnySizeAndAnyBytesAreStoredWhole) {
  RedisServer server;
  const auto transport = crier::redis::connect(options(server, "bytes"));
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte += static_cast<char>(b);
  std::vector<crier::Envelope> batch;
  for (const std::size_t size : {0u, 1u, 255u, 16u * 1024 - 7, 16u * 1024 + 9, 70u * 1024, 3u}) {
    std::string data;
    while (data.size() < size) data += every_byte + "\r\n$3\r\n*1\r\n";
    data.resize(size);
    batch.push_back(crier::new_envelope("com.example.test.blob", data, "application/octet-stream"));
  }
  transport->append(batch);
  const auto stored = transport->inspector().browse({.event_type = "com.example.test.blob"});
  ASSERT_EQ(stored.size(), batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ(stored[i].envelope.id, batch[i].id) << "event " << i;
    EXPECT_TRUE(stored[i].envelope.data == batch[i].data)
        << "event " << i << " of " << batch[i].data.size() << " bytes came back as " << stored[i].envelope.data.size();
  }
}

// With one publish in flight at most, batches from several threads are all stored, each
// thread's in its order.
TEST(RedisPublish, OnePublishInFlightCarriesBatchesFromThreadsInTheirOrder) {
  RedisServer server;
  crier::redis::Options o = options(server, "narrow");
  o.max_in_flight = 1;
  const auto transport = crier::redis::connect(o);
  crier::Bus bus{transport};
  EXPECT_EQ(batches_from_threads_stored_in_order(bus, *transport), "");
}

// `max_len` caps each event stream (approximately: Redis trims whole nodes of 100 entries),
// through plain XADD and through the guard's script alike, and keeps the newest events.
TEST(RedisPublish, MaxLenCapsEachStreamWithAndWithoutTheGuard) {
  RedisServer server;
  for (const auto window : {0ms, 60000ms}) {
    const std::string prefix = window.count() ? "guarded" : "plain";
    crier::redis::Options o = options(server, prefix);
    o.max_len = 500;
    o.dedup_window = window;
    crier::Bus bus{crier::redis::connect(o)};
    std::vector<Job> jobs;
    for (int i = 1; i <= 3000; ++i) jobs.push_back({i, "kept or trimmed"});
    for (std::size_t i = 0; i < jobs.size(); i += 250) bus.publish_batch(std::span<const Job>(jobs).subspan(i, 250));
    const std::string key = prefix + ":com.example.test.job";
    const long length = std::stol(cli(server, "XLEN " + key));
    EXPECT_GE(length, 500) << prefix;
    EXPECT_LT(length, 600) << prefix;  // 3000 without the cap
    const std::string newest = cli(server, "XREVRANGE " + key + " + - COUNT 1");
    EXPECT_NE(newest.find("\"n\":3000"), std::string::npos) << prefix << ": " << newest;
  }
}

// Publishers and two subscriber names run while the server is SIGKILLed and restarted, with
// appendfsync always: every publish that returned is stored, once, and every subscriber
// handles every one of them (a few twice: those in hand, or acknowledged after the last
// fsync).
TEST(RedisRestart, NoAcknowledgedEventIsLostWhenTheServerIsKilledUnderLoad) {
  RedisServer server("always");
  crier::redis::Options o = options(server, "restart");
  o.timeout = 60s;
  o.visibility_timeout = 2s;
  const auto transport = crier::redis::connect(o);
  crier::Bus bus{transport};

  std::mutex mu;
  std::condition_variable cv;
  std::set<int> acknowledged;
  std::map<std::string, std::map<int, int>> handled;  // subscriber -> n -> calls
  auto handler_of = [&](const std::string& name) {
    return [&, name](const Job& j) {
      std::lock_guard lock(mu);
      ++handled[name][j.n];
      cv.notify_all();
    };
  };
  auto billing = bus.subscribe<Job>("billing", handler_of("billing"));
  auto audit = bus.subscribe<Job>("audit", handler_of("audit"));

  std::atomic<bool> stop{false};
  std::atomic<int> failed_publishes{0};
  std::vector<std::thread> publishers;
  for (int p = 0; p < 2; ++p)
    publishers.emplace_back([&, p] {
      for (int i = 0; !stop.load(); ++i) {
        const int n = p * 1'000'000 + i;
        try {
          bus.publish(Job{n, "under fire"});
        } catch (const crier::Error&) {
          failed_publishes.fetch_add(1);  // not acknowledged: may or may not be stored
          continue;
        }
        std::lock_guard lock(mu);
        acknowledged.insert(n);
        cv.notify_all();
      }
    });
  auto wait_acknowledged = [&](std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 120s, [&] { return acknowledged.size() >= n; });
  };
  ASSERT_TRUE(wait_acknowledged(2000));
  server.kill();
  server.start();
  std::size_t before_restart = 0;
  {
    std::lock_guard lock(mu);
    before_restart = acknowledged.size();
  }
  EXPECT_TRUE(wait_acknowledged(before_restart + 2000)) << "publishing did not resume after the restart";
  stop = true;
  for (auto& t : publishers) t.join();

  std::unique_lock lock(mu);
  const bool all = cv.wait_for(lock, 120s, [&] {
    for (const char* name : {"billing", "audit"})
      for (int n : acknowledged)
        if (!handled[name].count(n)) return false;
    return true;
  });
  int duplicates = 0;
  std::size_t missing = 0;
  for (const char* name : {"billing", "audit"})
    for (int n : acknowledged) {
      const auto it = handled[name].find(n);
      if (it == handled[name].end())
        ++missing;
      else
        duplicates += it->second - 1;
    }
  std::printf(
      "[ figure ] redis killed under load (appendfsync always): %zu publishes acknowledged, %d refused, "
      "%zu missing, %d handled twice over 2 subscribers\n",
      acknowledged.size(), failed_publishes.load(), missing, duplicates);
  EXPECT_TRUE(all);
  EXPECT_EQ(missing, 0u);
  // Publishes cut off by the kill were sent again only where they had not been stored.
  lock.unlock();
  std::set<std::string> ids;
  std::size_t stored = 0;
  for (const auto& s : transport->inspector().browse({.event_type = "com.example.test.job", .limit = 1'000'000})) {
    ids.insert(s.envelope.id);
    ++stored;
  }
  std::printf("[ figure ] after the restart: %zu events stored, %zu distinct\n", stored, ids.size());
  EXPECT_EQ(stored, ids.size()) << "an event was stored twice";
}

// A server restarted with much data answers LOADING until it has read it all. Redis slowed
// down on purpose to read its data (key-load-delay: 400 keys, 20 ms each; it answers clients
// while it reads, a few times a second): publishes wait for it within their timeout, and fail
// past it saying why.
TEST(RedisRestart, AServerLoadingItsDataIsWaitedForWithinTheTimeout) {
  RedisServer server("everysec", "", "appendonly no\nkey-load-delay 20000\nloading-process-events-interval-bytes 1024");
  cli(server, "EVAL \"for i = 1, 400 do redis.call('SET', 'filler:' .. i, string.rep('x', 1500)) end\" 0");
  cli(server, "SAVE");
  server.kill();
  server.start("Server initialized");  // listening; its data takes 8 s to read

  crier::redis::Options hurried = options(server, "loading");
  hurried.timeout = 2s;
  try {
    crier::Bus bus{crier::redis::connect(hurried)};
    bus.publish(Job{0, "while loading"});
    FAIL() << "published into a server still loading its data";
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    EXPECT_NE(std::string(e.what()).find("is loading its data: LOADING"), std::string::npos) << e.what();
  }
  crier::redis::Options patient = options(server, "loading");
  patient.timeout = 30s;
  crier::Bus bus{crier::redis::connect(patient)};
  bus.publish(Job{1, "once loaded"});
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("billing", [&](const Job& j) { seen.add(j); });
  seen.wait_for(1);
  EXPECT_EQ(seen.values(), std::vector<int>{1});
  EXPECT_EQ(cli(server, "STRLEN filler:400"), "1500\n");  // loaded, the last key too
}

TEST(RedisConsumerProcess, EventsInTheHandsOfAKilledProcessGoToAnotherOfTheGroupAfterTheVisibilityTimeout) {
  constexpr int kEvents = 50;
  constexpr auto kVisibility = 2000ms;
  RedisServer server;
  crier::redis::Options o = options(server, "killed");
  o.visibility_timeout = kVisibility;
  const auto transport = crier::redis::connect(o);
  crier::Bus bus{transport};
  std::vector<Job> jobs;
  for (int i = 0; i < kEvents; ++i) jobs.push_back({i, "job"});
  bus.publish_batch(jobs);

  Child child = spawn({CRIER_CONSUMER_CHILD, "redis", server.url(), o.prefix, std::to_string(kVisibility.count())});
  const Takeover t = take_over_from_killed(child, *transport, bus, kEvents, 10 * kVisibility);
  std::printf(
      "[ figure ] redis takeover: first event handled %lld ms after the kill (visibility timeout %lld ms); "
      "%d handler calls for %d events\n",
      static_cast<long long>(t.first_after.count()), static_cast<long long>(kVisibility.count()), t.calls, kEvents);
  // The dead process renewed its entries at most a quarter of the timeout before it died.
  EXPECT_GE(t.first_after, kVisibility / 2);
  EXPECT_EQ(t.calls, kEvents) << "each event handled once by the second process";
}

// The entries of `stream` that group `group` has handed out and not seen acknowledged.
std::size_t pending_of(const RedisServer& server, const std::string& stream, const std::string& group) {
  const std::string summary = cli(server, "XPENDING " + stream + " " + group);
  return static_cast<std::size_t>(std::stoul(summary.substr(0, summary.find('\n'))));
}

// Fetches from `consumer` until `n` events came or 10 s passed.
std::vector<crier::StoredEvent> fetch_n(crier::Consumer& consumer, std::size_t n) {
  std::vector<crier::StoredEvent> out;
  const auto until = Clock::now() + 10s;
  while (out.size() < n && Clock::now() < until)
    for (auto& e : consumer.fetch(n - out.size(), 200ms)) out.push_back(std::move(e));
  return out;
}

// Three jobs published on a bus of `o`, fetched by subscriber billing's consumer and not yet
// acknowledged.
struct ThreeTaken {
  std::shared_ptr<crier::Transport> transport;
  std::unique_ptr<crier::Consumer> consumer;
  std::vector<crier::StoredEvent> events;
};
ThreeTaken three_taken(const crier::redis::Options& o) {
  ThreeTaken t;
  t.transport = crier::redis::connect(o);
  crier::Bus{t.transport}.publish_batch(std::vector<Job>{{1, "a"}, {2, "b"}, {3, "c"}});
  t.consumer = t.transport->consume({.subscriber = "billing", .event_type = "com.example.test.job"});
  t.events = fetch_n(*t.consumer, 3);
  t.consumer->taken(t.events.size());
  return t;
}

// Acknowledgements are sent in one XACK before the next read. When the server is lost with
// that read, they are sent again once it is back (before, they were dropped: each event came
// back after the visibility timeout and was handled a second time).
TEST(RedisConsumerLink, AcknowledgementsCutOffByALostServerAreSentOnceItIsBack) {
  RedisServer server("always");  // the group's pending entries survive the kill
  crier::redis::Options o = options(server, "acks");
  o.timeout = 1s;
  o.visibility_timeout = 60s;  // no entry comes back by its timeout during the test
  auto [transport, consumer, taken] = three_taken(o);
  ASSERT_EQ(taken.size(), 3u);
  const std::string stream = "acks:com.example.test.job";
  EXPECT_EQ(pending_of(server, stream, "billing"), 3u);

  server.kill();
  for (auto& e : taken) consumer->ack(std::move(e.lease));
  EXPECT_THROW((void)consumer->fetch(10, 100ms), crier::Error);  // the acknowledgements go with it
  server.start();
  EXPECT_TRUE(consumer->fetch(10, 300ms).empty()) << "an acknowledged event came back";
  EXPECT_EQ(pending_of(server, stream, "billing"), 0u) << "acknowledgements were lost with the server";
}

// An XREADGROUP that Redis ran but whose answer never came (the link timed out, or broke
// after the server took the read): its entries are pending under this consumer's name. On
// its next link the consumer reads them back from its own pending list, before newer entries
// (before, they waited for the visibility timeout, and came after the newer ones).
void lost_read_is_taken_back(bool ordered) {
  RedisServer server;
  crier::redis::Options o = options(server, "lost_read");
  o.timeout = 500ms;
  o.visibility_timeout = 60s;
  const auto transport = crier::redis::connect(o);
  auto consumer =
      transport->consume({.subscriber = "billing", .event_type = "com.example.test.job", .ordered = ordered});
  const std::string stream = "lost_read:com.example.test.job";
  // Stopped, the server runs what was sent meanwhile once it goes on, answering links the
  // consumer has closed. The fetch cut off must be a read, not the look for abandoned entries
  // that a fetch makes first every 250 ms: tried again when it was that.
  for (int tries = 0; tries < 5 && pending_of(server, stream, "billing") == 0; ++tries) {
    auto earlier = consumer->fetch(10, 0ms);  // looks for abandoned entries; an earlier try's events
    for (auto& e : earlier) consumer->ack(std::move(e.lease));
    consumer->taken(earlier.size());
    crier::Bus{transport}.publish_batch(std::vector<Job>{{1, "a"}, {2, "b"}, {3, "c"}});
    ASSERT_EQ(::kill(server.pid(), SIGSTOP), 0);
    EXPECT_THROW((void)consumer->fetch(10, 100ms), crier::Error);
    ASSERT_EQ(::kill(server.pid(), SIGCONT), 0);
  }
  ASSERT_EQ(pending_of(server, stream, "billing"), 3u);
  crier::Bus{transport}.publish_batch(std::vector<Job>{{4, "d"}, {5, "e"}, {6, "f"}});

  auto taken = fetch_n(*consumer, 6);
  ASSERT_EQ(taken.size(), 6u) << "entries read on a lost link waited for the visibility timeout";
  std::vector<std::string> positions;
  for (auto& e : taken) {
    positions.push_back(e.lease->position());
    consumer->ack(std::move(e.lease));
  }
  consumer->taken(taken.size());
  auto entry_id = [](const std::string& id) {  // ms-seq
    return std::pair(std::stoull(id), std::stoull(id.substr(id.find('-') + 1)));
  };
  EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end(), [&](const std::string& a, const std::string& b) {
    return entry_id(a) < entry_id(b);
  })) << "not oldest first";
  EXPECT_EQ(std::set<std::string>(positions.begin(), positions.end()).size(), 6u);
  EXPECT_TRUE(consumer->fetch(10, 300ms).empty()) << "an event came twice";
  EXPECT_EQ(pending_of(server, stream, "billing"), 0u);
}

TEST(RedisConsumerLink, EntriesReadOnALinkLostBeforeTheirAnswerAreTakenBackOnTheNext) {
  lost_read_is_taken_back(/*ordered=*/false);
}

TEST(RedisConsumerLink, AnOrderedSubscribersEntriesReadOnALostLinkComeBackBeforeLaterOnes) {
  lost_read_is_taken_back(/*ordered=*/true);
}

// Acknowledgements Redis refuses (an ACL here; a full disk's MISCONF, a demoted primary's
// READONLY alike) are kept and sent again, the fetch failing with the reason, and no new
// entry is read meanwhile. Before, they were dropped without a word: each event came back
// after the visibility timeout and was handled a second time (seen with the orders demo
// when the disk under Redis filled up).
TEST(RedisConsumerLink, AcknowledgementsRedisRefusesAreSentAgainAndNoEventIsReadMeanwhile) {
  RedisServer server;
  crier::redis::Options o = options(server, "refused_acks");
  o.visibility_timeout = 60s;  // no entry comes back by its timeout during the test
  auto [transport, consumer, taken] = three_taken(o);
  ASSERT_EQ(taken.size(), 3u);
  const std::string stream = "refused_acks:com.example.test.job";

  (void)cli(server, "ACL SETUSER default -xack");
  for (auto& e : taken) consumer->ack(std::move(e.lease));
  crier::Bus{transport}.publish(Job{4, "d"});
  std::vector<crier::StoredEvent> later;
  std::string refusal;
  for (int fetches = 0; fetches < 20 && refusal.empty(); ++fetches) try {
      for (auto& e : consumer->fetch(10, 100ms)) later.push_back(std::move(e));
    } catch (const crier::Error& e) {
      refusal = e.what();
    }
  ASSERT_NE(refusal, "") << "acknowledgements Redis refused were not said";
  EXPECT_NE(refusal.find("redis: acknowledging 3 handled events of " + stream + ": NOPERM"), std::string::npos)
      << refusal;
  EXPECT_NE(refusal.find("no new event is read meanwhile"), std::string::npos) << refusal;
  EXPECT_LE(later.size(), 1u);  // event 4, when read with the refused acknowledgements
  crier::Bus{transport}.publish(Job{5, "e"});
  EXPECT_THROW((void)consumer->fetch(10, 100ms), crier::Error) << "a new entry was read";
  EXPECT_EQ(pending_of(server, stream, "billing"), 3u + later.size());

  (void)cli(server, "ACL SETUSER default +xack");
  const auto rest = fetch_n(*consumer, 2 - later.size());
  EXPECT_EQ(later.size() + rest.size(), 2u) << "events 4 and 5, once each";
  consumer->taken(later.size() + rest.size());
  EXPECT_EQ(pending_of(server, stream, "billing"), 2u) << "the refused acknowledgements were not sent again";
}

// A server whose client-output-buffer-limit for normal clients is below what a read returns
// closes the connection at each such read (managed Redis often sets one). Before, the
// consumer sent the read again on a new connection, thousands of times a second, for ever,
// without a word; now it says so and reads fewer entries at a time until they fit. An entry
// that does not fit alone is said as such.
TEST(RedisConsumerLink, ReadsLargerThanTheServersOutputLimitAreSaidAndMadeSmaller) {
  RedisServer server("everysec", "", "client-output-buffer-limit normal 1mb 1mb 0\n");
  Reports reports;
  crier::Bus bus{crier::redis::connect(options(server, "big")), reports.bus_options()};
  std::vector<Job> jobs;
  for (int i = 1; i <= 100; ++i) jobs.push_back({i, std::string(30000, 'x')});  // 3 MB in all
  bus.publish_batch(jobs);
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("reader", [&](const Job& j) { seen.add(j); });
  ASSERT_TRUE(bus.flush(std::chrono::seconds(60))) << "handled " << seen.values().size();
  auto values = seen.values();
  std::sort(values.begin(), values.end());
  EXPECT_EQ(values.size(), 100u);
  EXPECT_EQ(std::unique(values.begin(), values.end()), values.end()) << "an event handled twice";
  const std::string said = reports.wait_for(crier::Report::Kind::transport_failed, "reading at most");
  EXPECT_NE(said.find("the server closed the connection each time this was sent"), std::string::npos) << said;
  EXPECT_NE(said.find("client-output-buffer-limit"), std::string::npos) << said;

  bus.publish(Job{101, std::string(1200000, 'x')});  // alone above the limit
  const std::string alone = reports.wait_for(crier::Report::Kind::transport_failed, "even one entry at a time");
  EXPECT_NE(alone.find("an entry is larger than that limit"), std::string::npos) << alone;
}

// Entries trimmed away while a consumer that died had them pending: the next consumer finds
// them gone, and they become dead letters that say so, rather than being retried forever.
TEST(RedisTrimmed, EntriesDeletedWhilePendingAreDeadLetteredWithTheReason) {
  RedisServer server;
  crier::redis::Options o = options(server, "trim");
  o.visibility_timeout = 300ms;
  auto first = crier::redis::connect(o);
  {
    crier::Bus publisher{first};
    publisher.publish_batch(std::vector<Job>{{1, "a"}, {2, "b"}, {3, "c"}});
  }
  auto vanished = first->consume({.subscriber = "billing", .event_type = "com.example.test.job"});
  std::vector<crier::StoredEvent> held;
  while (held.size() < 3)
    for (auto& e : vanished->fetch(10, 1s)) held.push_back(std::move(e));
  (void)cli(server, "XTRIM trim:com.example.test.job MAXLEN 0");

  const auto second = crier::redis::connect(o);
  Counter corrupt;
  crier::BusOptions bo;
  bo.on_error = [&](const crier::Report& r) {
    if (r.kind == crier::Report::Kind::corrupt_event) corrupt.add();
  };
  crier::Bus survivor{second, bo};
  auto sub = survivor.subscribe<Job>("billing", [](const Job&) { ADD_FAILURE() << "a deleted entry was delivered"; });
  corrupt.wait_for(3);
  ASSERT_TRUE(survivor.flush(30s));
  EXPECT_EQ(survivor.dead_letter_count({.subscriber = "billing"}), 3u);
  for (const auto& l : survivor.dead_letters({.subscriber = "billing"}))
    EXPECT_NE(l.last_error.find("was deleted"), std::string::npos) << l.last_error;
  EXPECT_EQ(second->inspector().subscribers().front().lag, 0u);
  held.clear();
  vanished->close();
}

// Redis's own count of a group's unread entries (its `lag`: entries added less entries read)
// takes an entry trimmed before the group read it for unread, for ever: a subscriber that lost
// 200 events to trimming showed a lag of 200 after it had caught up. Its lag is what it has
// not read and can still read; the inspector's notices say how many it lost, before, while and
// after it reads on. A subscriber that read everything before the trim lost nothing. Its
// consumer, too, took them for unread for ever: bus.flush() never saw it caught up, and
// drain's count of what was left counted them while newer events waited.
TEST(RedisTrimmed, EventsTrimmedBeforeASubscriberReadThemAreSaidLostNotCountedAsLag) {
  RedisServer server;
  const crier::redis::Options o = options(server, "lose");
  const auto transport = crier::redis::connect(o);
  crier::Inspector& in = transport->inspector();
  const std::string type = "com.example.test.job";
  auto reader = transport->consume({.subscriber = "reader", .event_type = type});
  auto keeper = transport->consume({.subscriber = "keeper", .event_type = type});
  // Takes and acknowledges at least n events as a bus does, then reads once more, which sends
  // the acknowledgements (they go with the next read) and may hand over what was read ahead.
  // Returns how many it took.
  auto take = [](crier::Consumer& c, std::size_t n) {
    auto handle = [&c](std::vector<crier::StoredEvent> events) {
      c.taken(events.size());
      for (auto& e : events) c.ack(std::move(e.lease));
      return events.size();
    };
    std::size_t taken = 0;
    while (taken < n) taken += handle(c.fetch(n - taken, 1s));
    return taken + handle(c.fetch(0, 0ms));
  };
  auto publish = [&](int from, int to) {
    std::vector<crier::Envelope> events;
    for (int i = from; i <= to; ++i) events.push_back(crier::new_envelope(type, std::to_string(i), "text/plain"));
    transport->append(events);
  };
  auto lag_of = [&](const std::string& sub) {
    for (const auto& s : in.subscribers())
      if (s.subscriber == sub) return s.lag;
    return std::uint64_t{999999};
  };
  publish(1, 10);
  take(*reader, 10);
  publish(11, 310);
  take(*keeper, 310);
  (void)cli(server, "XTRIM lose:" + type + " MAXLEN 100");  // 210 gone: 10 read by reader, 200 not

  EXPECT_EQ(lag_of("reader"), 100u);
  EXPECT_EQ(lag_of("keeper"), 0u);
  const std::vector<std::string> lost{"subscriber reader of " + type + " lost 200 events: deleted from lose:" + type +
                                      " before it read them (trimmed by max_len, or by an XTRIM or XDEL)"};
  EXPECT_EQ(in.notices(), lost);
  const std::size_t part = take(*reader, 40);  // its position is past the first entry now
  if (part < 100) {                            // it did not read every entry ahead
    EXPECT_EQ(in.notices(), lost);
    take(*reader, 100 - part);
  }
  EXPECT_EQ(lag_of("reader"), 0u);
  EXPECT_EQ(in.notices(), lost);
  publish(311, 320);
  EXPECT_EQ(lag_of("reader"), 10u);
  EXPECT_EQ(in.notices(), lost);
  // The bus asks its consumer whether it is caught up (flush waits for that) and how many
  // events are left (drain reports them): neither may count the lost ones.
  EXPECT_FALSE(reader->caught_up());
  EXPECT_EQ(reader->backlog(), 10u);
  take(*reader, 10);
  EXPECT_TRUE(reader->caught_up()) << "flush would wait for the lost events for ever";
  EXPECT_EQ(reader->backlog(), 0u);
  reader->close();
  keeper->close();
}

// A server at its maxmemory (maxmemory-policy noeviction) refuses every write, even one that
// would change nothing. A publish says so, what frees the server, and what of it was stored.
// A subscriber whose consumer group exists still starts and takes the events that wait
// (before, its XGROUP CREATE was refused before Redis could answer that the group exists: no
// subscriber could start until memory was freed).
TEST(RedisRefusedWrites, PublishesAreRefusedInWordsAndASubscriberWithAGroupStillTakesItsEvents) {
  RedisServer server;
  const crier::redis::Options o = options(server, "full");
  {
    crier::Bus bus{crier::redis::connect(o)};
    (void)bus.subscribe<Job>("worker", [](const Job&) {});  // its group made, then closed
    for (int i = 1; i <= 5; ++i) bus.publish(Job{i, "before"});
  }
  (void)cli(server, "CONFIG SET maxmemory 1");
  crier::Bus bus{crier::redis::connect(o)};
  auto refused = [&](auto&& publish, const std::string& stored) {
    try {
      publish();
      ADD_FAILURE() << "a server out of memory stored an event";
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      EXPECT_NE(std::string(e.what()).find("OOM command not allowed"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("raise maxmemory"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(stored), std::string::npos) << e.what();
    }
  };
  refused([&] { bus.publish(Job{6, "refused"}); }, "; it was not stored");
  refused(
      [&] {
        bus.publish_batch(std::vector<Job>{{7, "refused"}, {8, "refused"}});
      },
      "; 0 of the 2 events were stored");
  SeenJobs seen;
  auto sub = bus.subscribe<Job>("worker", [&](const Job& j) { seen.add(j); });
  seen.wait_for(5);
  auto values = seen.values();
  std::sort(values.begin(), values.end());
  EXPECT_EQ(values, (std::vector<int>{1, 2, 3, 4, 5}));
}

// A bus pointed at a replica (read-only) is told to use the primary, at publish and at subscribe.
TEST(RedisRefusedWrites, AReadOnlyReplicaIsToldApartAndThePrimaryAskedFor) {
  RedisServer server;
  const crier::redis::Options o = options(server, "replica");
  crier::Bus bus{crier::redis::connect(o)};
  const RefusingPort no_primary;
  (void)cli(server, "REPLICAOF 127.0.0.1 " + std::to_string(no_primary.port()));
  const std::string hint =
      "READONLY You can't write against a read only replica. (this server is a read-only "
      "replica: give crier its primary's address)";
  try {
    bus.publish(Job{1, "to a replica"});
    ADD_FAILURE() << "a replica stored an event";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find(hint + "; it was not stored"), std::string::npos) << e.what();
  }
  try {
    auto sub = bus.subscribe<Job>("worker", [](const Job&) {});
    ADD_FAILURE() << "a replica made a consumer group";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find(hint), std::string::npos) << e.what();
  }
}

// With Options::replicas, publish() returns once that many replicas have the events (WAIT):
// what is acknowledged survives a failover to a replica. A replica that does not confirm in
// time (here stopped) fails the publish, saying what is stored and what is not known; once
// it answers again, publishes go through.
TEST(RedisReplicas, APublishIsAcknowledgedOnceTheReplicasAskedForHaveIt) {
  // No 5 s for more replicas to come; the bus as a user with the rules it documents.
  RedisServer primary("everysec", "", "repl-diskless-sync-delay 0\nuser bus on >pw " + crier::redis::acl_rules("wait"));
  // No append-only file: a replica writing its first one ignores SIGTERM ("Writing initial AOF,
  // can't exit"), and a test that fails early would wait for it.
  RedisServer replica("everysec", "", "appendonly no\nreplicaof 127.0.0.1 " + std::to_string(primary.port()),
                      "MASTER <-> REPLICA sync: Finished with success");
  crier::redis::Options o = options(primary, "wait");
  o.user = "bus";
  o.password = "pw";
  o.replicas = 1;
  // The first publish may wait for the primary to count the new replica (after its first ack).
  crier::Bus bus{crier::redis::connect(o)};
  o.timeout = 1s;
  crier::Bus impatient{crier::redis::connect(o)};
  bus.publish(Job{1, "one"});
  bus.publish_batch(std::vector<Job>{{2, "two"}, {3, "three"}});
  EXPECT_EQ(cli(replica, "XLEN wait:com.example.test.job"), "3\n");

  ASSERT_EQ(::kill(replica.pid(), SIGSTOP), 0);
  struct Resume {  // a stopped server cannot be stopped when the test fails
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{replica.pid()};
  for (const bool many : {false, true}) {
    const auto start = Clock::now();
    try {
      if (many)
        impatient.publish_batch(std::vector<Job>{{5, "five"}, {6, "six"}});
      else
        impatient.publish(Job{4, "four"});
      ADD_FAILURE() << "acknowledged without the replica";
    } catch (const crier::Error& e) {
      const std::string them = many ? "them" : "it";
      EXPECT_NE(std::string(e.what()).find(": stored on the primary, but 0 of the 1 replica asked for "
                                           "(Options::replicas) confirmed " +
                                           them + " within "),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("has 1 connected now); a failover to a replica could lose " + them),
                std::string::npos)
          << e.what();
    }
    EXPECT_GE(Clock::now() - start, 900ms) << "the replica was not waited for";
  }
  ASSERT_EQ(::kill(replica.pid(), SIGCONT), 0);
  bus.publish(Job{7, "seven"});
  EXPECT_EQ(cli(replica, "XLEN wait:com.example.test.job"), "7\n");

  crier::redis::Options bad = o;
  bad.replicas = -1;
  EXPECT_THROW((void)crier::redis::connect(bad), crier::Error);
}

// A dead letter Redis refuses to store (its stream's key holds a string) is reported, and its
// event stays pending: it comes back after the visibility timeout, not at once (before, it was
// handed back at once, its handler run over and over, nothing reported), and is dead-lettered
// once Redis takes the letter.
TEST(RedisDeadLetters, ALetterRedisRefusesIsReportedAndItsEventComesBackAfterTheVisibilityTimeout) {
  RedisServer server;
  crier::redis::Options o = options(server, "refuse");
  o.visibility_timeout = 1s;
  (void)cli(server, "SET refuse:_dlq:strict:com.example.test.job not-a-stream");
  UnstoredLetters unstored;
  crier::Bus bus{crier::redis::connect(o), unstored.options()};
  auto sub = unstored.give_up_on_jobs(bus);
  bus.publish(Job{1, "x"});
  ASSERT_TRUE(unstored.wait_for(2, 60s)) << "dead-lettering that failed was not reported; handler calls: "
                                         << unstored.calls();
  EXPECT_NE(unstored.last().find("cannot dead-letter event"), std::string::npos) << unstored.last();
  EXPECT_NE(unstored.last().find("WRONGTYPE"), std::string::npos) << unstored.last();
  EXPECT_GE(unstored.pause(), 900ms) << "it came back at once";
  (void)cli(server, "DEL refuse:_dlq:strict:com.example.test.job");
  ASSERT_TRUE(bus.flush(60s));
  EXPECT_EQ(bus.dead_letter_count({.subscriber = "strict"}), 1u);
}

// The orders demo's order service when Redis stops answering writes (paused longer than the
// demo's 10 s timeout): it ends saying which order was not placed and why, with status 1
// (it ended in std::terminate, status 134).
TEST(RedisDemo, AStoreThatStopsAnsweringEndsTheOrderServiceWithTheReason) {
#ifndef CRIER_ORDERS_DEMO
  GTEST_SKIP() << "built without the examples";
#else
  RedisServer server;
  (void)cli(server, "CLIENT PAUSE 60000 WRITE");
  std::string out;
  FILE* p = ::popen(
      (std::string(CRIER_ORDERS_DEMO) + " --role orders --orders 10 --redis " + server.url() + " 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  (void)cli(server, "CLIENT UNPAUSE");
  ASSERT_TRUE(WIFEXITED(status)) << out;
  EXPECT_EQ(WEXITSTATUS(status), 1) << out;
  EXPECT_NE(out.find("order o-1 was not placed"), std::string::npos) << out;
  EXPECT_NE(out.find("no answer within 10000 ms"), std::string::npos) << out;
  EXPECT_NE(out.find("1 event may not be stored"), std::string::npos) << out;
  EXPECT_EQ(out.find("terminate"), std::string::npos) << out;
#endif
}

// A service of the demo runs for as long as it is left to: the loss of its store, and its
// return, are said as they happen, not only in its summary when it stops.
TEST(RedisDemo, AServiceSaysWhatItsStoreDoesAsItHappens) {
#ifndef CRIER_ORDERS_DEMO
  GTEST_SKIP() << "built without the examples";
#else
  RedisServer server;
  const std::string demo = std::string(CRIER_ORDERS_DEMO) + " --orders 1 --redis " + server.url();
  FILE* p = ::popen((demo + " --role email 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  auto read_until = [&](const std::string& text) {  // false when the service ended before
    char line[4096];
    while (out.find(text) == std::string::npos)
      if (std::fgets(line, sizeof line, p) == nullptr)
        return false;
      else
        out += line;
    return true;
  };
  ASSERT_TRUE(read_until("email: handling orders")) << out;
  server.kill();
  server.start();
  (void)run(demo + " --role orders");  // handled once the service is connected again
  (void)read_until("the end");         // of its output
  EXPECT_EQ(::pclose(p), 0) << out;
  const auto lost = out.find("redis: link to 127.0.0.1:" + std::to_string(server.port()) + " lost: ");
  const auto back = out.find("redis: connected again");
  const auto stopped = out.find("email service: stopped after");
  ASSERT_NE(stopped, std::string::npos) << out;
  EXPECT_LT(lost, back) << out;
  EXPECT_LT(back, stopped) << out;
  EXPECT_NE(out.find("email sent 1 confirmations"), std::string::npos) << out;
#endif
}

TEST(RedisInterop, RedisCliAndTheCloudEventsSdkReadAndWriteCrierEvents) {
  RedisServer server;
  Counter corrupt;
  crier::BusOptions bo;
  bo.on_error = [&](const crier::Report& r) {
    if (r.kind == crier::Report::Kind::corrupt_event) corrupt.add();
  };
  crier::Bus bus{crier::redis::connect(options(server, "interop")), bo};
  crier::Attributes a;
  a.subject = "order 7 \"quoted\" caf\xC3\xA9";
  a.partition_key = "customer-3";
  bus.publish(Job{1, "from crier"}, a);

  // 1. Read with redis-cli; judged by the official SDK.
  const std::filesystem::path modules = CRIER_INTEROP_MODULES;
  const std::string xrange = "--json XRANGE interop:com.example.test.job - +";
  if (std::filesystem::exists(modules / "cloudevents")) {
    const std::string out = run("redis-cli -p " + std::to_string(server.port()) + " " + xrange + " | NODE_PATH='" +
                                modules.string() + "' node '" CRIER_REDIS_INTEROP_SCRIPT "'");
    const auto report = nlohmann::json::parse(out.substr(out.rfind("{\"node\"")));
    std::printf("[ figure ] redis interop judged by the CloudEvents SDK under Node.js %s\n",
                report["node"].get<std::string>().c_str());
    ASSERT_EQ(report["read"].size(), 1u) << out;
    const auto& e = report["read"][0];
    EXPECT_EQ(e["type"], "com.example.test.job");
    EXPECT_EQ(e["specversion"], "1.0");
    EXPECT_EQ(e["source"], bus.source());
    EXPECT_EQ(e["subject"], a.subject);
    EXPECT_EQ(e["partitionkey"], "customer-3");
    EXPECT_EQ(e["datacontenttype"], "application/json");
    EXPECT_EQ(e["data"]["n"], 1);
  } else {
    std::printf("the npm packages are not installed in %s: the SDK's judgement is skipped\n", modules.c_str());
    const std::string out = cli(server, xrange);
    EXPECT_NE(out.find("ce_specversion"), std::string::npos) << out;
  }

  // 2. Written with redis-cli: one event, two malformed entries.
  std::mutex mu;
  std::map<int, crier::Envelope> got;
  Counter arrived;
  auto sub = bus.subscribe<Job>("from-cli", [&](const Job& j, crier::Delivery& d) {
    {
      std::lock_guard lock(mu);
      got[j.n] = d.envelope();
    }
    arrived.add();
  });
  const std::string key = "interop:com.example.test.job";
  (void)cli(server, "XADD " + key +
                        " '*' ce_specversion 1.0 ce_id cli-1 ce_source /redis-cli ce_type com.example.test.job "
                        "ce_subject 'from the shell' ce_partitionkey k-cli content-type application/json data "
                        "'{\"n\":101,\"note\":\"from redis-cli\"}'");
  (void)cli(server, "XADD " + key + " '*' ce_specversion 1.0 ce_type com.example.test.job data '{\"n\":102}'");
  (void)cli(server, "XADD " + key + " '*' hello world");
  arrived.wait_for(2);  // crier's own and redis-cli's
  corrupt.wait_for(2);  // the malformed entries, dead-lettered
  ASSERT_TRUE(bus.flush(30s));
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[101].id, "cli-1");
    EXPECT_EQ(got[101].source, "/redis-cli");
    EXPECT_EQ(got[101].subject, "from the shell");
    EXPECT_EQ(got[101].extensions["partitionkey"], "k-cli");
  }
  const auto letters = bus.dead_letters({.subscriber = "from-cli"});
  ASSERT_EQ(letters.size(), 2u);
  EXPECT_NE(letters[0].last_error.find("malformed entry"), std::string::npos) << letters[0].last_error;
  EXPECT_NE(letters[0].last_error.find("id"), std::string::npos) << letters[0].last_error;
  EXPECT_NE(letters[1].last_error.find("not a CloudEvent"), std::string::npos) << letters[1].last_error;
}

}  // namespace
