// NATS JetStream across the loss of a node: a real 3-node cluster on loopback, a stream of 3
// replicas, publishers and subscribers running while a follower, the stream leader and the
// node the publisher is connected to are SIGKILLed, or go in lame duck mode, and are restarted
// in turn.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include <crier/nats.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "durable_events.hpp"
#include "nats_server.hpp"

using namespace test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

class Cluster {
 public:
  Cluster() {
    std::vector<int> routes{free_port(), free_port(), free_port()};
    for (int i = 0; i < 3; ++i)
      nodes_.push_back(std::make_unique<NatsServer>(
          NatsNode{"n" + std::to_string(i + 1), 0, routes[static_cast<std::size_t>(i)], routes,
                   // A node in lame duck mode (SIGUSR2, as in a rolling upgrade) closes its clients'
                   // connections over at most 30 s (the least nats-server takes), a second after it
                   // stops taking new ones, then ends.
                   "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n"}));
  }
  std::vector<std::string> urls() const {
    std::vector<std::string> u;
    for (const auto& n : nodes_) u.push_back(n->url());
    return u;
  }
  NatsServer& node(const std::string& name) { return *nodes_.at(static_cast<std::size_t>(name.back() - '1')); }
  NatsServer& by_url(const std::string& url) {
    for (auto& n : nodes_)
      if (url.find(":" + std::to_string(n->port())) != std::string::npos) return *n;
    throw std::runtime_error("no node at " + url);
  }

  // The stream's leader and followers once the cluster reports a leader and `followers` of
  // them: asked again at each leader election the cluster announces, or each second, for up
  // to `limit` (a stream just made, or a node just back, may not have its roles yet).
  std::pair<std::string, std::vector<std::string>> roles(const std::string& stream, std::size_t followers,
                                                         std::chrono::seconds limit = 30s) {
    const auto deadline = Clock::now() + limit;
    natsConnection* nc = nullptr;
    natsSubscription* elections = nullptr;
    for (auto& n : nodes_)
      if (natsConnection_ConnectTo(&nc, n->url().c_str()) == NATS_OK) break;
    if (nc) {
      const std::string subject = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + stream;
      (void)natsConnection_SubscribeSync(&elections, nc, subject.c_str());
    }
    auto r = roles(stream);
    while ((r.first.empty() || r.second.size() < followers) && elections && Clock::now() < deadline) {
      natsMsg* m = nullptr;
      (void)natsSubscription_NextMsg(&m, elections, 1000);
      natsMsg_Destroy(m);
      r = roles(stream);
    }
    natsSubscription_Destroy(elections);
    natsConnection_Destroy(nc);
    return r;
  }

  // The stream's leader and followers as the cluster reports them (asked on any node).
  std::pair<std::string, std::vector<std::string>> roles(const std::string& stream) {
    for (auto& n : nodes_) {
      natsConnection* nc = nullptr;
      if (natsConnection_ConnectTo(&nc, n->url().c_str()) != NATS_OK) continue;
      natsMsg* reply = nullptr;
      const std::string subject = "$JS.API.STREAM.INFO." + stream;
      const natsStatus s = natsConnection_RequestString(&reply, nc, subject.c_str(), "", 2000);
      std::pair<std::string, std::vector<std::string>> out;
      if (s == NATS_OK) {
        const auto j = nlohmann::json::parse(
            std::string(natsMsg_GetData(reply), static_cast<std::size_t>(natsMsg_GetDataLength(reply))), nullptr,
            false);
        if (j.is_object() && j.contains("cluster")) {
          out.first = j["cluster"].value("leader", std::string());
          for (const auto& r : j["cluster"].value("replicas", nlohmann::json::array()))
            out.second.push_back(r.value("name", std::string()));
        }
      }
      natsMsg_Destroy(reply);
      natsConnection_Destroy(nc);
      if (!out.first.empty()) return out;
    }
    return {};
  }

 private:
  std::vector<std::unique_ptr<NatsServer>> nodes_;
};

// What every subscriber saw.
class Seen {
 public:
  void add(const std::string& who, int n) {
    std::lock_guard lock(mu_);
    auto& s = seen_[who];
    if (!s.insert(n).second) ++duplicates_;
    cv_.notify_all();
  }
  bool wait_for_all(const std::set<int>& acked, const std::vector<std::string>& who, std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] {
      for (const auto& w : who)
        for (int n : acked)
          if (!seen_[w].count(n)) return false;
      return true;
    });
  }
  std::size_t missing(const std::set<int>& acked, const std::string& who) {
    std::lock_guard lock(mu_);
    std::size_t m = 0;
    for (int n : acked) m += seen_[who].count(n) == 0;
    return m;
  }
  std::size_t duplicates() {
    std::lock_guard lock(mu_);
    return duplicates_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::set<int>> seen_;
  std::size_t duplicates_ = 0;
};

// Publishes and handles events while a follower, the stream's leader and the publisher's node
// go in turn, each by `take_down` (which returns once the node has ended), and come back.
void no_acknowledged_event_is_lost(const std::function<void(NatsServer&)>& take_down, const std::string& how) {
  Cluster cluster;
  crier::nats::Options o;
  o.servers = cluster.urls();
  o.stream = "FAILOVER";
  o.subject_prefix = "failover";
  o.replicas = 3;
  o.ack_wait = 5s;
  o.publish_timeout = 60s;
  std::mutex url_mu;
  std::string publisher_url;
  auto publisher_options = o;
  publisher_options.on_connection = [&](crier::nats::ConnectionState state, const std::string& url) {
    if (state == crier::nats::ConnectionState::disconnected) return;
    std::lock_guard lock(url_mu);
    publisher_url = url;
  };
  crier::Bus publisher{crier::nats::connect(publisher_options)};
  crier::Bus subscribers{crier::nats::connect(o)};
  Seen seen;
  auto a = subscribers.subscribe<Job>("audit", [&](const Job& j) { seen.add("audit", j.n); });
  auto b = subscribers.subscribe<Job>("billing", [&](const Job& j) { seen.add("billing", j.n); });

  std::mutex acked_mu;
  std::set<int> acked;
  std::atomic<bool> stop{false};
  std::atomic<long long> longest_ms{0};
  std::atomic<int> failures{0};
  std::mutex progress_mu;
  std::condition_variable progress;
  int published = 0;
  std::thread pub([&] {
    for (int i = 0; !stop; ++i) {
      const auto t0 = Clock::now();
      try {
        publisher.publish(Job{i, ""});
        std::lock_guard lock(acked_mu);
        acked.insert(i);
      } catch (const crier::Error& e) {
        ++failures;
        std::fprintf(stderr, "publish %d failed: %s\n", i, e.what());
      }
      const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
      if (took > longest_ms) longest_ms = took;
      std::lock_guard lock(progress_mu);
      ++published;
      progress.notify_all();
    }
  });
  auto run_for = [&](int publishes) {  // until that many more publishes returned
    std::unique_lock lock(progress_mu);
    const int until = published + publishes;
    progress.wait(lock, [&] { return published >= until; });
  };
  auto take_down_and_restart = [&](NatsServer& node, const std::string& what) {
    longest_ms = 0;
    run_for(200);
    take_down(node);
    const auto t0 = Clock::now();
    run_for(500);  // the publisher goes on through the loss
    const auto through = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    node.start();
    run_for(200);
    std::printf("[ figure ] %s %s: 500 publishes went through in %lld ms; longest publish %lld ms\n", what.c_str(),
                how.c_str(), static_cast<long long>(through), static_cast<long long>(longest_ms.load()));
    ::testing::Test::RecordProperty(what + "_longest_publish_ms", static_cast<int>(longest_ms.load()));
  };

  run_for(300);
  auto [leader, followers] = cluster.roles("FAILOVER", 2);
  ASSERT_FALSE(leader.empty());
  ASSERT_FALSE(followers.empty());
  take_down_and_restart(cluster.node(followers.front()), "follower");
  leader = cluster.roles("FAILOVER", 2).first;
  ASSERT_FALSE(leader.empty());
  take_down_and_restart(cluster.node(leader), "leader");
  std::string url;
  {
    std::lock_guard lock(url_mu);
    url = publisher_url;
  }
  take_down_and_restart(cluster.by_url(url), "client's node");
  stop = true;
  pub.join();

  std::set<int> all;
  {
    std::lock_guard lock(acked_mu);
    all = acked;
  }
  const bool complete = seen.wait_for_all(all, {"audit", "billing"}, 120s);
  std::printf("[ figure ] %zu acknowledged, %d failed publishes, missing audit %zu billing %zu, %zu duplicates\n",
              all.size(), failures.load(), seen.missing(all, "audit"), seen.missing(all, "billing"), seen.duplicates());
  EXPECT_TRUE(complete);
  EXPECT_EQ(seen.missing(all, "audit"), 0u);
  EXPECT_EQ(seen.missing(all, "billing"), 0u);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(all.size(), 2000u);
}

TEST(NatsCluster, NoAcknowledgedEventIsLostWhenAFollowerTheLeaderOrTheClientsNodeIsKilled) {
  no_acknowledged_event_is_lost([](NatsServer& node) { node.kill(); }, "killed");
}

// Lame duck mode is how a node leaves a cluster gracefully (a rolling upgrade): it takes no new
// client, then closes the connections it has, spread over its lame_duck_duration, then ends.
TEST(NatsCluster, NoAcknowledgedEventIsLostWhenAFollowerTheLeaderOrTheClientsNodeGoesInLameDuckMode) {
  no_acknowledged_event_is_lost([](NatsServer& node) { node.stop(SIGUSR2); }, "in lame duck mode");
}

// A stream of 3 replicas asked for while a node is down cannot be placed ("no suitable peers",
// JetStream error 10005), as while a cluster forms. connect() tries again until its publish
// timeout: it says so when the node stays down, and succeeds once the node is back.
TEST(NatsCluster, AStreamWaitsForItsReplicasNodesUntilThePublishTimeout) {
  Cluster cluster;
  crier::nats::Options o;
  o.servers = {cluster.node("n1").url(), cluster.node("n2").url()};
  o.replicas = 3;
  o.publish_timeout = 60s;
  o.stream = "FORMED";  // once it exists, the cluster has formed
  o.subject_prefix = "formed";
  (void)crier::nats::connect(o);
  cluster.node("n3").stop();
  o.stream = "PLACED";
  o.subject_prefix = "placed";
  o.publish_timeout = 10s;  // longer than an election, if n3 led the cluster
  try {
    (void)crier::nats::connect(o);
    ADD_FAILURE() << "a stream of 3 replicas was created on 2 nodes";
  } catch (const crier::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no suitable peers"), std::string::npos) << e.what();
  }

  o.publish_timeout = 60s;
  std::shared_ptr<crier::Transport> transport;
  std::string error;
  std::thread connecting([&] {
    try {
      transport = crier::nats::connect(o);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  cluster.node("n3").start();
  connecting.join();
  EXPECT_EQ(error, "");
  ASSERT_NE(transport, nullptr);
  EXPECT_EQ(cluster.roles("PLACED", 2).second.size(), 2u);  // the leader and two followers
}

}  // namespace
