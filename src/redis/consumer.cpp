#include "redis/consumer.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <limits>

#include "common/error_text.hpp"
#include "redis/unread.hpp"

namespace crier::redis {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long one blocking read waits at most: how soon close() is noticed, and held entries
// renewed, while nothing arrives.
constexpr milliseconds kReadSlice{100};
// How often abandoned entries are looked for (XAUTOCLAIM) while new ones keep coming.
constexpr milliseconds kClaimEvery{250};
// Reads sent ahead at most, while entries keep coming: with two, Redis has the next one to
// answer while the consumer receives the last.
constexpr std::size_t kReadsAhead = 2;

// The two streams a consumer reads: the events, and dead letters sent back to it.
enum Source : int { kMain = 0, kRedrive = 1 };

// The consumer's bookkeeping that its leases reach, also after the consumer is gone.
struct Held {
  Source source;
  std::string entry;
  Clock::time_point renewed;
  bool counted;  // against the window: handed out, not failed
};

struct State {
  Mutex mu;
  CondVar cv;
  std::map<std::uint64_t, Held> held CRIER_GUARDED_BY(mu);  // by consumer-unique lease number
  std::size_t outstanding CRIER_GUARDED_BY(mu) = 0;         // held and counted
  std::size_t untaken CRIER_GUARDED_BY(mu) = 0;             // fetched, not yet taken by the bus
  std::uint64_t next_lease CRIER_GUARDED_BY(mu) = 1;
  // Acknowledgements waiting to be sent in one round trip, by source; and attempts records
  // to forget with them.
  std::vector<std::string> acks[2] CRIER_GUARDED_BY(mu);
  std::vector<std::string> forget CRIER_GUARDED_BY(mu);

  std::shared_ptr<const Context> ctx;
  std::string group, consumer, keys[2], attempts_key, settled_field;

  // Takes lease `key` out of the books; what it held (nullopt when settled already, or
  // handed back when the consumer went).
  std::optional<Held> release(std::uint64_t key) {
    std::optional<Held> out;
    {
      MutexLock lock(mu);
      out = release_locked(key);
    }
    cv.notify_all();
    return out;
  }
  std::optional<Held> release_locked(std::uint64_t key) CRIER_REQUIRES(mu) {
    auto it = held.find(key);
    if (it == held.end()) return std::nullopt;
    std::optional<Held> out = std::move(it->second);
    if (out->counted) --outstanding;
    held.erase(it);
    return out;
  }

  // This consumer's entry, held by the bus or acknowledged (the acknowledgement not sent
  // yet): not to be handed out again.
  bool has(Source source, const std::string& id) CRIER_REQUIRES(mu) {
    for (const auto& [key, h] : held)
      if (h.source == source && h.entry == id) return true;
    return std::find(acks[source].begin(), acks[source].end(), id) != acks[source].end();
  }

  // Sets the idle time of entries still this consumer's: 0 renews the hold; past the
  // visibility timeout hands them back to the group.
  void touch(Source source, std::vector<std::string> entries, milliseconds idle) {
    if (entries.empty()) return;
    std::vector<std::string> args{group, consumer, std::to_string(idle.count())};
    for (auto& e : entries) args.push_back(std::move(e));
    const Command c = ctx->conn->eval(ctx->scripts.touch, {keys[source]}, std::move(args));
    (void)ctx->conn->pipeline(std::span<const Command>(&c, 1), "redis: renewing held entries");
  }

  milliseconds hand_back_idle() const { return ctx->options().visibility_timeout * 2; }

  std::string attempts_field(Source source, const std::string& entry) const {
    return (source == kMain ? "m:" : "r:") + entry;
  }
};

class RedisLease final : public Lease {
 public:
  RedisLease(std::weak_ptr<State> state, std::uint64_t key, std::string entry, bool record)
      : state(std::move(state)), key(key), entry(std::move(entry)), record(record) {}
  ~RedisLease() override {
    if (settled) return;
    auto s = state.lock();
    if (!s) return;
    auto h = s->release(key);
    if (!h) return;
    try {  // given up without an outcome: to any consumer of the group now
      s->touch(h->source, {h->entry}, s->hand_back_idle());
    } catch (const std::exception&) {
      // Lost connection: another consumer claims it after the visibility timeout.
    }
  }
  std::string position() const override { return entry; }

  std::weak_ptr<State> state;
  std::uint64_t key;
  std::string entry;
  bool record;  // an attempts record may exist for it
  bool settled = false;
};

std::string consumer_name() {
  static std::atomic<std::uint64_t> n{0};
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  return std::string(host[0] ? host : "host") + ":" + std::to_string(::getpid()) + ":" + std::to_string(++n);
}

class RedisConsumer final : public Consumer {
 public:
  RedisConsumer(std::shared_ptr<const Context> ctx, const ConsumerSpec& spec)
      : ctx_(std::move(ctx)), spec_(spec), state_(std::make_shared<State>()) {
    State& s = *state_;
    s.ctx = ctx_;
    s.group = spec.subscriber;
    s.consumer = consumer_name();
    s.keys[kMain] = ctx_->stream_key(spec.event_type);
    s.keys[kRedrive] = ctx_->named("redrive", spec.subscriber, spec.event_type);
    s.attempts_key = ctx_->named("attempts", spec.subscriber, spec.event_type);
    s.settled_field = spec.subscriber + " " + spec.event_type;
    turn_key_ = ctx_->named("turn", spec.subscriber, spec.event_type);
    ensure_groups(spec.start);
    link_ = ctx_->conn->dedicated("redis: consumer " + s.consumer);
    link_serial_ = link_->serial();
  }

  ~RedisConsumer() override {
    close();
    // What the bus still holds goes back to the group now (entries past the visibility
    // timeout, which any consumer's next claim takes), before the turn is given up: the
    // next consumer of an ordered subscriber then gets the oldest first. So do the entries
    // of a read sent ahead.
    std::vector<StoredEvent> read_ahead;
    try {
      while (!ahead_.empty()) collect_ahead(0, read_ahead);
    } catch (const std::exception&) {
      // Claimed after the visibility timeout.
    }
    std::vector<std::string> back[2];
    {
      MutexLock lock(state_->mu);
      for (auto& [key, h] : state_->held) back[h.source].push_back(std::move(h.entry));
      state_->held.clear();
    }
    try {
      flush_acks();
      for (int s : {kMain, kRedrive}) state_->touch(Source(s), std::move(back[s]), state_->hand_back_idle());
      if (holds_turn_) {
        const Command c = ctx_->conn->eval(ctx_->scripts.give_turn, {turn_key_}, {state_->consumer});
        (void)ctx_->conn->pipeline(std::span<const Command>(&c, 1), "redis: giving up the turn");
      }
      forget_consumer_if_idle();
    } catch (const std::exception&) {
      // Unreachable server: the entries are claimed after the visibility timeout, the turn
      // runs out.
    }
  }

  std::vector<StoredEvent> fetch(std::size_t max, milliseconds wait) override {
    try {
      return fetch_some(max, wait);
    } catch (const LostOnEveryTry& e) {
      // A server whose client-output-buffer-limit is below what a read returns closes the
      // connection at each: fewer entries a read from now on.
      const std::size_t asked = std::min(read_cap_, read_count_);
      if (asked <= 1)
        throw Error(Errc::transport_error,
                    e.message() + "; so even one entry at a time: an entry is larger than that limit");
      read_cap_ = asked / 2;
      throw Error(Errc::transport_error,
                  e.message() + "; reading at most " + std::to_string(read_cap_) + " entries at a time now");
    }
  }

  std::vector<StoredEvent> fetch_some(std::size_t max, milliseconds wait) {
    if (closed_.load(std::memory_order_acquire)) return {};
    const auto until = Clock::now() + wait;
    std::vector<StoredEvent> out;
    if (!ahead_.empty()) {
      collect_ahead(max, out);
      if (!ahead_.empty()) return out;  // the next read is out already
    }
    if (!acks_refused_.empty()) {  // no new entry until they are taken
      if (!out.empty()) return out;
      flush_acks();
    }
    for (;;) {
      renew();
      // out's entries count as outstanding already.
      const std::size_t room = std::min(max, out.size() + free_room(0));
      if (room <= out.size() || (spec_.ordered && !take_turn())) {
        if (!out.empty()) return out;
        idle(until);
        flush_acks();  // those that made room
        return {};
      }
      // What Redis handed this consumer on a lost link comes first: its oldest entries.
      bool more_abandoned = read_back_ && read_back(room, out);
      if (Clock::now() >= next_claim_) {
        more_abandoned = claim(room, out) || more_abandoned;
        next_claim_ = Clock::now() + std::min(kClaimEvery, ctx_->options().visibility_timeout / 4);
      }
      // An ordered subscriber reads no new entry while older ones wait to be claimed.
      if (out.size() < room && !(spec_.ordered && more_abandoned)) {
        const auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now());
        const milliseconds block = out.empty() ? std::clamp(left, milliseconds(0), kReadSlice) : milliseconds(0);
        read_new(std::min(room - out.size(), read_cap_), block, out);
      }
      if (!out.empty()) {
        if (acks_refused_.empty()) (void)send_ahead(max, 0);
        return out;
      }
      if (closed_.load(std::memory_order_acquire) || Clock::now() >= until) return out;
    }
  }

  void ack(std::unique_ptr<Lease> lease) override {
    auto& l = static_cast<RedisLease&>(*lease);
    l.settled = true;
    {
      // Sent by the fetch thread before its next read (within kReadSlice), in one XACK with
      // the others: a handler never waits for a round trip. Moved from held to acks at once,
      // so that a read back of pending entries never finds it in neither.
      MutexLock lock(state_->mu);
      auto h = state_->release_locked(l.key);
      if (!h) return;
      state_->acks[h->source].push_back(h->entry);
      if (l.record) state_->forget.push_back(state_->attempts_field(h->source, h->entry));
    }
    state_->cv.notify_all();
  }

  void failed(Lease& lease, const Attempts& attempts) override {
    auto& l = static_cast<RedisLease&>(lease);
    Source source = kMain;
    {
      MutexLock lock(state_->mu);
      auto it = state_->held.find(l.key);
      if (it == state_->held.end()) return;
      source = it->second.source;
      if (it->second.counted) {
        it->second.counted = false;
        --state_->outstanding;
      }
    }
    state_->cv.notify_all();
    (void)ctx_->conn->command(
        {"HSET", state_->attempts_key, state_->attempts_field(source, l.entry), record_of(attempts)},
        "redis: recording the attempts of an event");
    l.record = true;
  }

  std::uint64_t dead_letter(std::unique_ptr<Lease> lease, const DeadLetter& letter) override {
    auto& l = static_cast<RedisLease&>(*lease);
    Source source = kMain;
    {
      MutexLock lock(state_->mu);
      auto it = state_->held.find(l.key);
      if (it != state_->held.end()) source = it->second.source;
    }
    const std::string& stream = state_->keys[source];
    std::vector<std::string> args{state_->group, l.entry, state_->attempts_field(source, l.entry),
                                  state_->settled_field, std::to_string(unix_ms(std::chrono::system_clock::now()))};
    for (auto& [name, value] : letter_fields(letter, stream, l.entry)) {
      args.push_back(std::move(name));
      args.push_back(std::move(value));
    }
    const Command c = ctx_->conn->eval(
        ctx_->scripts.dead_letter,
        {stream, ctx_->named("dlq", spec_.subscriber, spec_.event_type), ctx_->key("dlq_ids"), ctx_->key("dlq_seq"),
         state_->attempts_key, ctx_->key("settled"),
         ctx_->named("dlq_done", spec_.subscriber, spec_.event_type) + ":" + std::to_string(source) + ":" + l.entry},
        std::move(args));
    // Settled either way: stored, or not stored and left pending without being handed back,
    // so that it comes back after the visibility timeout (XAUTOCLAIM) rather than at once, to
    // run its handler over and over. Held until then: a read back of pending entries skips it.
    l.settled = true;
    std::vector<Reply> r;
    try {
      r = ctx_->conn->pipeline(std::span<const Command>(&c, 1), "redis: dead-lettering event " + letter.envelope.id);
    } catch (...) {
      (void)state_->release(l.key);
      throw;
    }
    (void)state_->release(l.key);
    if (r.front().is_error())
      throw Error(Errc::transport_error,
                  "redis: dead-lettering event " + letter.envelope.id + ": " + r.front().str + refusal_hint(r.front()));
    return static_cast<std::uint64_t>(r.front().as_integer());
  }

  void taken(std::size_t n) override {
    MutexLock lock(state_->mu);
    state_->untaken -= std::min(n, state_->untaken);
  }

  // Caught up when the group has read every entry of both streams, and every entry it
  // counts as pending is one this consumer holds (or has acknowledged, the ack waiting for
  // the next read). The group is asked first and what this consumer holds counted after, and
  // acknowledgements on their way are not counted: Redis may have run them, and a read sent
  // behind them, whose entries the count must not hide.
  bool caught_up() override {
    std::uint64_t pending = 0;
    for (const GroupNow& g : groups_now()) {
      if (!g.info) continue;
      if (unread_left(g)) return false;
      pending += g.info->pending;
    }
    MutexLock lock(state_->mu);
    if (state_->untaken > 0) return false;
    return pending <= state_->held.size() + state_->acks[kMain].size() + state_->acks[kRedrive].size();
  }

  std::uint64_t backlog() override {
    std::uint64_t acknowledged = 0;  // but not sent yet
    {
      MutexLock lock(state_->mu);
      acknowledged = state_->acks[kMain].size() + state_->acks[kRedrive].size() + in_flush_;
    }
    std::uint64_t n = 0;
    for (const GroupNow& g : groups_now())
      if (g.info)
        n += g.info->pending + ctx_->unread->count(*ctx_->conn, g.key, state_->group, *g.info, g.stream).unread;
    return n - std::min(n, acknowledged);
  }

  void close() noexcept override {
    {
      MutexLock lock(state_->mu);
      closed_.store(true, std::memory_order_release);
    }
    state_->cv.notify_all();
  }

 private:
  // Each stream's group as XINFO tells it, with the stream's last entry id (for when Redis
  // cannot tell the lag).
  struct GroupNow {
    std::optional<GroupInfo> info;
    std::string last;      // the stream's last entry id
    std::string key;       // the stream
    Reply stream;          // its XINFO STREAM
    bool deleted = false;  // entries were ever deleted from it (trimmed): its lag may count them
  };
  std::vector<GroupNow> groups_now() {
    std::vector<Command> cmds;
    for (int s : {kMain, kRedrive}) {
      cmds.push_back({"XINFO", "GROUPS", state_->keys[s]});
      cmds.push_back({"XINFO", "STREAM", state_->keys[s]});
    }
    const auto r = ctx_->conn->pipeline(cmds, "redis: consumer group " + spec_.subscriber);
    std::vector<GroupNow> out;
    for (std::size_t i = 0; i < r.size(); i += 2) {
      if (r[i].is_error()) {
        if (r[i].is_error("ERR")) continue;  // no such stream: nothing in it
        throw Error(Errc::transport_error, "redis: consumer group " + spec_.subscriber + ": " + r[i].str);
      }
      auto stream = map_of(r[i + 1]);
      out.push_back({group_info(r[i], state_->group), stream["last-generated-id"].str, state_->keys[i / 2], r[i + 1],
                     stream["entries-added"].as_integer() != stream["length"].as_integer()});
    }
    return out;
  }

  // Whether entries after the group's position are still in its stream. Redis's lag takes an
  // entry deleted before the group read it (trimmed by max_len) for unread for ever, so that
  // its count is believed only when it is 0 or nothing was ever deleted; else the stream is
  // asked for the next entry (a round trip at each look, while flush and drain look).
  bool unread_left(const GroupNow& now) {
    const GroupInfo& g = *now.info;
    if (!id_less(g.last_delivered, now.last) || (g.lag_known && g.lag == 0)) return false;
    if (g.lag_known && !now.deleted) return true;
    const Reply next = ctx_->conn->command({"XRANGE", now.key, "(" + g.last_delivered, "+", "COUNT", "1"},
                                           "redis: consumer group " + spec_.subscriber);
    return !next.elements.empty();
  }

  void ensure_groups(const StartFrom& start) {
    const std::vector<Command> cmds = {{"XGROUP", "CREATE", state_->keys[kMain], state_->group,
                                        group_start(*ctx_->conn, state_->keys[kMain], start), "MKSTREAM"},
                                       {"XGROUP", "CREATE", state_->keys[kRedrive], state_->group, "0", "MKSTREAM"},
                                       {"SADD", ctx_->key("subscribers"), state_->settled_field},
                                       {"SADD", ctx_->key("types"), spec_.event_type}};
    const auto r = ctx_->conn->pipeline(cmds, "redis: consumer group " + spec_.subscriber);
    // A server out of memory refuses every write (OOM), even one that would change nothing:
    // what exists already is asked for, so that a subscriber can start then and take its events.
    const std::vector<Command> exists = {{"XINFO", "GROUPS", state_->keys[kMain]},
                                         {"XINFO", "GROUPS", state_->keys[kRedrive]},
                                         {"SISMEMBER", ctx_->key("subscribers"), state_->settled_field},
                                         {"SISMEMBER", ctx_->key("types"), spec_.event_type}};
    std::optional<std::vector<Reply>> found;
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (!r[i].is_error() || r[i].is_error("BUSYGROUP")) continue;
      if (r[i].is_error("OOM")) {
        if (!found) found = ctx_->conn->pipeline(exists, "redis: consumer group " + spec_.subscriber);
        const Reply& f = (*found)[i];
        if (i < 2 ? !f.is_error() && group_info(f, state_->group).has_value() : f.as_integer() == 1) continue;
      }
      throw Error(Errc::transport_error, "redis: consumer group " + spec_.subscriber + " of " + state_->keys[kMain] +
                                             ": " + r[i].str + refusal_hint(r[i]));
    }
  }

  // XAUTOCLAIM of entries idle past the visibility timeout (their consumer died, or gave
  // them back). True when more may wait.
  bool claim(std::size_t room, std::vector<StoredEvent>& out) {
    bool more = false;
    const std::string min_idle = std::to_string(ctx_->options().visibility_timeout.count());
    for (int s : {kMain, kRedrive}) {
      if (out.size() >= room) return true;
      read_count_ = std::min(room - out.size(), read_cap_);
      const Command c = {"XAUTOCLAIM", state_->keys[s], state_->group, state_->consumer,
                         min_idle,     "0-0",           "COUNT",       std::to_string(read_count_)};
      std::vector<Reply> r;
      try {
        r = ctx_->conn->run_on(link_, std::span<const Command>(&c, 1), "redis: claiming abandoned entries",
                               milliseconds(0));
      } catch (...) {
        (void)note_link();
        throw;
      }
      // Sent again on a new link, the claim may have run twice, the first answer lost: what
      // either claimed is read back from the pending list, oldest first (below).
      const bool relinked = note_link();
      if (r.front().is_error("NOGROUP")) {
        recreate_group();
        return true;
      }
      if (r.front().is_error())
        throw Error(Errc::transport_error,
                    "redis: claiming entries of " + state_->keys[s] + ": " + r.front().str + refusal_hint(r.front()));
      Reply& reply = r.front();
      if (reply.elements.size() < 2) continue;
      if (reply.elements[0].str != "0-0" || relinked) more = true;
      std::vector<std::pair<std::string, Reply*>> entries;
      for (Reply& e : reply.elements[1].elements)
        if (e.elements.size() == 2 && !e.elements[1].is_nil() && !relinked)
          entries.emplace_back(std::move(e.elements[0].str), &e.elements[1]);
      take_entries(Source(s), entries, /*redelivered=*/true, out);
      // Entries trimmed away while pending: Redis took them out of the group; the bus
      // dead-letters them with the reason, so that the loss is seen.
      if (reply.elements.size() >= 3)
        for (const Reply& gone : reply.elements[2].elements) out.push_back(trimmed(Source(s), gone.str));
    }
    return more;
  }

  // Free places in the window, beside `coming` entries on their way.
  std::size_t free_room(std::size_t coming) {
    MutexLock lock(state_->mu);
    const std::size_t window = std::max<std::size_t>(ctx_->options().window, 1);
    const std::size_t used = state_->outstanding + coming;
    return used >= window ? 0 : window - used;
  }

  // XREADGROUP of up to `count` new entries of both streams.
  Command read_command(std::size_t count, milliseconds block) const {
    Command c = {"XREADGROUP", "GROUP", state_->group, state_->consumer, "COUNT", std::to_string(count)};
    if (block.count() > 0) {
      c.push_back("BLOCK");
      c.push_back(std::to_string(block.count()));
    }
    c.append({"STREAMS", state_->keys[kMain], state_->keys[kRedrive], ">", ">"});
    return c;
  }

  // Reads new entries, after the acknowledgements waiting, in one round trip.
  void read_new(std::size_t count, milliseconds block, std::vector<StoredEvent>& out) {
    read_count_ = count;
    AckBatch batch = take_acks();
    batch.cmds.push_back(read_command(count, block));
    std::vector<Reply> r;
    try {
      r = ctx_->conn->run_on(link_, batch.cmds, "redis: reading " + state_->keys[kMain], block);
    } catch (...) {
      acks_lost(std::move(batch));
      (void)note_link();
      throw;
    }
    (void)acks_answered(std::move(batch), r);
    // Sent again on a new link, the read may have run twice, the first answer lost: its
    // entries are read back with these from the pending list, oldest first.
    if (note_link()) return;
    take_read(r.back(), out);
  }

  // Reads back the entries Redis handed this consumer on a link lost before their answer
  // came: pending under its name, neither held by the bus nor acknowledged. (Waiting for the
  // visibility timeout instead, they would hold up an ordered subscriber's later events.)
  // True when more may wait: the window filled first.
  bool read_back(std::size_t room, std::vector<StoredEvent>& out) {
    const std::size_t page_size = read_count_ = std::min<std::size_t>(128, read_cap_);
    for (int s : {kMain, kRedrive}) {
      std::string after = "0";
      for (bool more = true; more;) {
        if (out.size() >= room) return true;
        AckBatch batch = take_acks();  // first: an entry acknowledged meanwhile is not read back
        batch.cmds.push_back({"XREADGROUP", "GROUP", state_->group, state_->consumer, "COUNT",
                              std::to_string(page_size), "STREAMS", state_->keys[s], after});
        std::vector<Reply> r;
        try {
          r = ctx_->conn->run_on(link_, batch.cmds, "redis: reading back pending entries of " + state_->keys[s],
                                 milliseconds(0));
        } catch (...) {
          acks_lost(std::move(batch));
          (void)note_link();
          throw;
        }
        (void)acks_answered(std::move(batch), r);
        (void)note_link();  // a history read changes nothing: lost, it is simply sent again
        Reply& reply = r.back();
        if (reply.is_error("NOGROUP")) {
          recreate_group();
          return true;
        }
        if (reply.is_error())
          throw Error(Errc::transport_error, "redis: reading back pending entries of " + state_->keys[s] + ": " +
                                                 reply.str + refusal_hint(reply));
        std::vector<std::pair<std::string, Reply*>> entries;
        std::vector<std::string> gone;  // deleted while pending (nil fields)
        bool full = false;
        more = false;
        for (Reply& stream : reply.elements) {
          if (stream.elements.size() != 2) continue;
          std::vector<Reply>& page = stream.elements[1].elements;
          more = page.size() >= page_size;
          MutexLock lock(state_->mu);
          for (Reply& e : page) {
            if (e.elements.size() != 2) continue;
            full = out.size() + entries.size() + gone.size() >= room;
            if (full) break;
            after = e.elements[0].str;
            if (state_->has(Source(s), after)) continue;
            if (e.elements[1].is_nil())
              gone.push_back(after);
            else
              entries.emplace_back(after, &e.elements[1]);
          }
        }
        take_read_back(Source(s), entries, gone, out);
        if (full) return true;
      }
    }
    read_back_ = false;
    return false;
  }

  // Takes what a page of the read back found into `out`, renewed: a history read does not
  // reset an entry's idle time, and another consumer would claim it once that passed the
  // visibility timeout.
  void take_read_back(Source source, const std::vector<std::pair<std::string, Reply*>>& entries,
                      const std::vector<std::string>& gone, std::vector<StoredEvent>& out) {
    std::vector<std::string> ids;
    for (const auto& [id, fields] : entries) ids.push_back(id);
    take_entries(source, entries, /*redelivered=*/true, out);
    for (const std::string& id : gone) out.push_back(trimmed(source, id));
    state_->touch(source, std::move(ids), milliseconds(0));
  }

  // Whether link_ is another link than at the last call: the one before was lost, and what
  // Redis handed out on it may never have arrived (read_back() reads it back).
  bool note_link() {
    const std::uint64_t serial = link_ ? link_->serial() : 0;
    if (serial == link_serial_) return false;
    link_serial_ = serial;
    read_back_ = true;
    return true;
  }

  // Sends the next read (with the acknowledgements waiting) without waiting for its answer,
  // so that Redis answers while the bus decodes and hands out what came; a later fetch
  // collects it. Only with room in the window beside `coming` entries and the reads already
  // out, and not for ordered subscribers (they read no new entry while older ones wait to be
  // claimed). True when one was sent.
  bool send_ahead(std::size_t max, std::size_t coming) {
    if (spec_.ordered || !link_ || closed_.load(std::memory_order_acquire)) return false;
    for (const Ahead& a : ahead_) coming += a.count;
    const std::size_t count = std::min({max, free_room(coming), read_cap_});
    if (count == 0) return false;
    AckBatch batch = take_acks();
    batch.cmds.push_back(read_command(count, milliseconds(0)));
    try {
      link_->set_timeout(ctx_->options().timeout);
      link_->send(batch.cmds);
    } catch (const LinkError&) {
      acks_lost(std::move(batch));
      lost_link();  // the next read reconnects
      return false;
    }
    const std::size_t replies = batch.cmds.size();
    batch.cmds.clear();  // sent
    ahead_.push_back(Ahead{replies, std::move(batch), count});
    return true;
  }

  // Takes the answer to the oldest read sent ahead into `out`. When it brought entries, and
  // no claim of abandoned ones is due, sends the next reads first.
  void collect_ahead(std::size_t max, std::vector<StoredEvent>& out) {
    Ahead a = std::move(ahead_.front());
    ahead_.pop_front();
    std::vector<Reply> r;
    try {
      r = link_->receive(a.replies);
    } catch (const LinkError&) {
      acks_lost(std::move(a.acks));
      lost_link();  // what the read took is read back from the pending list on the next link
      return;
    }
    const bool acknowledged = acks_answered(std::move(a.acks), r);
    Reply& reply = r.back();
    if (reply.is_error("LOADING")) return;  // a restarted server: the next read waits for it
    std::size_t n = 0;
    for (const Reply& stream : reply.elements)
      if (stream.elements.size() == 2) n += stream.elements[1].elements.size();
    if (n > 0 && acknowledged && Clock::now() < next_claim_)
      while (ahead_.size() < kReadsAhead && send_ahead(max, n)) {
      }
    take_read(reply, out);
  }

  // The link broke: dropped with the reads sent ahead on it (their acknowledgements to be
  // sent again).
  void lost_link() {
    link_.reset();
    (void)note_link();
    for (Ahead& a : ahead_) acks_lost(std::move(a.acks));
    ahead_.clear();
  }

  // The entries of an XREADGROUP reply, to `out`.
  void take_read(Reply& reply, std::vector<StoredEvent>& out) {
    if (reply.is_error("NOGROUP")) return recreate_group();
    if (reply.is_error())
      throw Error(Errc::transport_error,
                  "redis: reading " + state_->keys[kMain] + ": " + reply.str + refusal_hint(reply));
    for (Reply& stream : reply.elements) {  // nil when nothing came
      if (stream.elements.size() != 2) continue;
      const Source s = stream.elements[0].str == state_->keys[kMain] ? kMain : kRedrive;
      std::vector<std::pair<std::string, Reply*>> entries;
      for (Reply& e : stream.elements[1].elements)
        if (e.elements.size() == 2) entries.emplace_back(std::move(e.elements[0].str), &e.elements[1]);
      take_entries(s, entries, /*redelivered=*/false, out);
    }
  }

  // The server lost the group (a restart without persistence, a deleted stream): made again
  // from the stream's start, and said.
  void recreate_group() {
    ensure_groups(StartFrom::beginning());
    ctx_->conn->notice("redis: consumer group " + state_->group + " of " + state_->keys[kMain] +
                       " was missing (the server restarted without its data?); made again, reading from the "
                       "stream's oldest entry");
  }

  void take_entries(Source source, const std::vector<std::pair<std::string, Reply*>>& entries, bool redelivered,
                    std::vector<StoredEvent>& out) {
    if (entries.empty()) return;
    std::vector<Attempts> attempts(entries.size());
    std::vector<bool> recorded(entries.size(), false);
    if (redelivered) {  // failed before, perhaps in a consumer that is gone
      Command c = {"HMGET", state_->attempts_key};
      for (const auto& [id, fields] : entries) c.push_back(state_->attempts_field(source, id));
      const Reply r = ctx_->conn->command(c, "redis: attempts of claimed entries");
      for (std::size_t i = 0; i < entries.size() && i < r.elements.size(); ++i)
        if (r.elements[i].kind == Reply::Kind::string) {
          attempts[i] = attempts_of_record(r.elements[i].str);
          recorded[i] = true;
        }
    }
    std::vector<std::pair<std::uint64_t, std::size_t>> keys;  // lease key, index in out
    {
      MutexLock lock(state_->mu);
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& [id, fields] = entries[i];
        if (redelivered && state_->has(source, id)) continue;  // ours still (renewed late): once
        const std::uint64_t key = state_->next_lease++;
        state_->held.emplace(key, Held{source, id, Clock::now(), true});
        ++state_->outstanding;
        ++state_->untaken;
        StoredEvent e;
        e.lease = std::make_unique<RedisLease>(state_, key, id, recorded[i]);
        e.attempts = attempts[i];
        out.push_back(std::move(e));
        keys.emplace_back(key, out.size() - 1);
      }
    }
    std::size_t k = 0;
    for (std::size_t i = 0; i < entries.size() && k < keys.size(); ++i) {
      StoredEvent& e = out[keys[k].second];
      if (static_cast<RedisLease&>(*e.lease).entry != entries[i].first) continue;
      ++k;
      Fields fields = fields_of_reply(std::move(*entries[i].second));
      try {
        e.envelope = take_envelope(fields);
        if (e.envelope.type != spec_.event_type)
          throw Error(Errc::invalid_envelope,
                      "its ce_type '" + e.envelope.type + "' is not its stream's (" + spec_.event_type + ")");
      } catch (const std::exception& ex) {
        e.corrupt = "malformed entry " + entries[i].first + " of stream " + state_->keys[source] + ": " +
                    crier::detail::message_of(ex);
        e.envelope = readable_envelope(fields, state_->keys[source], entries[i].first, spec_.event_type);
      }
    }
  }

  StoredEvent trimmed(Source source, const std::string& id) {
    StoredEvent e;
    e.corrupt = "entry " + id + " of stream " + state_->keys[source] +
                " was deleted (MAXLEN trimming or XDEL) while subscriber " + spec_.subscriber +
                " had not finished it: its event is lost to this subscriber";
    e.envelope = readable_envelope({}, state_->keys[source], id, spec_.event_type);
    e.envelope.data.clear();
    e.envelope.datacontenttype.clear();
    MutexLock lock(state_->mu);
    const std::uint64_t key = state_->next_lease++;
    state_->held.emplace(key, Held{source, id, Clock::now(), true});
    ++state_->outstanding;
    ++state_->untaken;
    e.lease = std::make_unique<RedisLease>(state_, key, id, false);
    return e;
  }

  // Acknowledgements taken to be sent: their entries and attempts records, their commands,
  // and how many events they settle (counted by backlog() until they are sent or lost).
  struct AckBatch {
    std::vector<std::string> acks[2];
    std::vector<std::string> forget;
    std::vector<Command> cmds;
    std::size_t commands = 0;  // the first `commands` of cmds are the batch's own
    std::size_t events = 0;
  };
  AckBatch take_acks() {
    AckBatch batch;
    {
      MutexLock lock(state_->mu);
      for (int s : {kMain, kRedrive}) batch.acks[s].swap(state_->acks[s]);
      batch.forget.swap(state_->forget);
      batch.events = batch.acks[kMain].size() + batch.acks[kRedrive].size();
      in_flush_ += batch.events;
    }
    if (batch.events == 0) return batch;
    for (int s : {kMain, kRedrive}) {
      if (batch.acks[s].empty()) continue;
      Command c = {"XACK", state_->keys[s], state_->group};
      c.append(batch.acks[s].begin(), batch.acks[s].end());
      batch.cmds.push_back(std::move(c));
    }
    if (!batch.forget.empty()) {
      Command c = {"HDEL", state_->attempts_key};
      c.append(batch.forget.begin(), batch.forget.end());
      batch.cmds.push_back(std::move(c));
    }
    batch.cmds.push_back({"HSET", ctx_->key("settled"), state_->settled_field,
                          std::to_string(unix_ms(std::chrono::system_clock::now()))});
    batch.commands = batch.cmds.size();
    return batch;
  }
  // The batch's commands were answered, first in `replies`. When Redis refused one (a full
  // disk's MISCONF, a replica's READONLY, an ACL), the acknowledgements wait again, and no
  // entry is read until they are taken (flush_acks): dropped, each event would come back
  // after the visibility timeout and be handled a second time. False when refused.
  bool acks_answered(AckBatch&& batch, std::span<const Reply> replies) {
    const auto answers = replies.first(std::min(batch.commands, replies.size()));
    const auto refused = std::find_if(answers.begin(), answers.end(), [](const Reply& r) { return r.is_error(); });
    if (refused == answers.end()) {
      if (batch.events > 0) acks_refused_.clear();
      {
        MutexLock lock(state_->mu);
        in_flush_ -= batch.events;
      }
      state_->cv.notify_all();
      return true;
    }
    acks_refused_ = "redis: acknowledging " + std::to_string(batch.events) + " handled events of " +
                    state_->keys[kMain] + ": " + refused->str + refusal_hint(*refused) +
                    " (they are sent again; no new event is read meanwhile)";
    acks_lost(std::move(batch));
    return false;
  }
  // They were lost with the link, perhaps run, perhaps not: waiting again, to go with the
  // next read (XACK and HDEL are idempotent). Dropped, each event would come back after the
  // visibility timeout and be handled a second time.
  void acks_lost(AckBatch&& batch) {
    {
      MutexLock lock(state_->mu);
      in_flush_ -= batch.events;
      for (int s : {kMain, kRedrive})
        state_->acks[s].insert(state_->acks[s].end(), std::make_move_iterator(batch.acks[s].begin()),
                               std::make_move_iterator(batch.acks[s].end()));
      state_->forget.insert(state_->forget.end(), std::make_move_iterator(batch.forget.begin()),
                            std::make_move_iterator(batch.forget.end()));
    }
    state_->cv.notify_all();
  }

  // Sends the acknowledgements waiting, until none is left (none: no round trip). The fetch
  // thread's, or the destructor's once it is gone.
  void flush_acks() {
    for (AckBatch batch = take_acks(); batch.events > 0; batch = take_acks()) {
      std::vector<Reply> r;
      try {
        r = ctx_->conn->pipeline(batch.cmds, "redis: acknowledging events");
      } catch (...) {
        acks_lost(std::move(batch));
        throw;
      }
      if (!acks_answered(std::move(batch), r)) throw Error(Errc::transport_error, acks_refused_);
    }
  }

  // Renews the hold on every entry the bus holds, each a quarter of the visibility timeout
  // after its last renewal.
  void renew() {
    const auto now = Clock::now();
    if (now < next_look_) return;
    const auto vis = ctx_->options().visibility_timeout;
    next_look_ = now + std::min(kClaimEvery, vis / 8);
    std::vector<std::string> due[2];
    {
      MutexLock lock(state_->mu);
      for (auto& [key, h] : state_->held) {
        if (now - h.renewed < vis / 4) continue;
        h.renewed = now;
        due[h.source].push_back(h.entry);
      }
    }
    for (int s : {kMain, kRedrive}) state_->touch(Source(s), std::move(due[s]), milliseconds(0));
  }

  // Waits until `until` for room in the window (a settled event) or close().
  void idle(Clock::time_point until) {
    MutexLock lock(state_->mu);
    if (!closed_.load(std::memory_order_acquire)) (void)state_->cv.wait_until(state_->mu, until);
  }

  // Ordered subscribers: one consumer at a time reads a (subscriber, type), so that no
  // key's later event is handed out while an earlier one is unfinished elsewhere. The turn
  // is a key holding the consumer's name, renewed by its holder; it runs out twice the
  // visibility timeout after a holder died, when that holder's entries can be claimed.
  bool take_turn() {
    const auto now = Clock::now();
    if (holds_turn_ && now < turn_renew_at_) return true;
    const auto vis = ctx_->options().visibility_timeout;
    const Command c =
        ctx_->conn->eval(ctx_->scripts.turn, {turn_key_}, {state_->consumer, std::to_string(2 * vis.count())});
    const auto r = ctx_->conn->pipeline(std::span<const Command>(&c, 1), "redis: taking the turn of " + turn_key_);
    const bool mine = r.front().as_integer() == 1;
    if (mine && !holds_turn_) next_claim_ = Clock::time_point{};  // the last holder's first
    holds_turn_ = mine;
    if (mine) turn_renew_at_ = now + vis / 3;
    return mine;
  }

  // A consumer with nothing pending is taken out of the group's list (one with pending
  // entries never is: XGROUP DELCONSUMER would lose them).
  void forget_consumer_if_idle() {
    for (int s : {kMain, kRedrive}) {
      const Reply r = ctx_->conn->command({"XPENDING", state_->keys[s], state_->group, "-", "+", "1", state_->consumer},
                                          "redis: pending entries");
      if (r.elements.empty())
        (void)ctx_->conn->command({"XGROUP", "DELCONSUMER", state_->keys[s], state_->group, state_->consumer},
                                  "redis: leaving the group");
    }
  }

  std::shared_ptr<const Context> ctx_;
  ConsumerSpec spec_;
  std::shared_ptr<State> state_;
  std::string turn_key_;
  std::unique_ptr<Link> link_;  // the fetch thread's
  std::atomic<bool> closed_{false};
  std::size_t in_flush_ = 0;  // guarded by state_->mu: acknowledgements being sent
  // A read sent ahead on link_, its answer not read yet: how many replies it waits for (the
  // acknowledgements sent with it, then the read), those acknowledgements, and how many
  // entries it may bring.
  struct Ahead {
    std::size_t replies;
    AckBatch acks;
    std::size_t count;
  };
  std::deque<Ahead> ahead_;  // the fetch thread's, oldest first
  bool holds_turn_ = false;  // the fetch thread's
  Clock::time_point turn_renew_at_{};
  Clock::time_point next_look_{};   // renew(): the fetch thread's
  Clock::time_point next_claim_{};  // fetch(): the fetch thread's
  std::uint64_t link_serial_ = 0;   // of link_ when last looked at (0: none)
  bool read_back_ = false;          // the fetch thread's: see read_back()
  std::string acks_refused_;        // the fetch thread's: why Redis refused the last acknowledgements
  // The fetch thread's: the most entries a read asks for (lowered when a server closes the
  // connection at reads that return more), and how many the last read asked for.
  std::size_t read_cap_ = std::numeric_limits<std::size_t>::max();
  std::size_t read_count_ = 0;
};

}  // namespace

std::string group_start(Connection& conn, const std::string& key, const StartFrom& start) {
  switch (start.kind) {
    case StartFrom::Kind::beginning:
      return "0";
    case StartFrom::Kind::now:
      return "$";
    case StartFrom::Kind::position: {
      const auto id = parse_entry_id(start.position);
      if (!id)
        throw Error(Errc::invalid_argument,
                    "redis: position '" + start.position + "' is not a stream entry id (1700000000000-0)");
      return id_before(*id);
    }
    case StartFrom::Kind::time:
      break;
  }
  // Entry ids carry the server's milliseconds; the events of that millisecond are told apart
  // by their time attribute: the group starts before the first at or after `start.time`.
  const std::int64_t ms = std::max<std::int64_t>(0, unix_ms(start.time));
  std::string last = id_before(EntryId{static_cast<std::uint64_t>(ms), 0});
  for (;;) {
    const Reply page = conn.command({"XRANGE", key, "(" + last, "+", "COUNT", "100"}, "redis: the start of " + key);
    for (const Reply& e : page.elements) {
      if (e.elements.size() != 2) continue;
      const auto id = parse_entry_id(e.elements[0].str);
      const Fields f = fields_of_reply(e.elements[1]);
      const std::string* time = field(f, "ce_time");
      bool before = false;
      if (id && id->ms == static_cast<std::uint64_t>(ms) && time) try {
          before = parse_time(*time) < start.time;
        } catch (const std::exception&) {
        }
      if (!before) return last;
      last = e.elements[0].str;
    }
    if (page.elements.size() < 100) return last;
  }
}

Fields letter_fields(const DeadLetter& letter, std::string_view stream_key, std::string_view entry_id) {
  Fields f = fields_of(letter.envelope);
  f.emplace_back("crier_subscriber", letter.subscriber);
  f.emplace_back("crier_event_type", letter.envelope.type);
  f.emplace_back("crier_entry", std::string(stream_key) + " " + std::string(entry_id));
  f.emplace_back("crier_attempts", std::to_string(letter.attempts));
  f.emplace_back("crier_first_error", letter.first_error);
  f.emplace_back("crier_last_error", letter.last_error);
  f.emplace_back("crier_first_failure", format_time(letter.first_failure));
  f.emplace_back("crier_last_failure", format_time(letter.last_failure));
  return f;
}

std::unique_ptr<Consumer> make_consumer(std::shared_ptr<const Context> ctx, const ConsumerSpec& spec) {
  return std::make_unique<RedisConsumer>(std::move(ctx), spec);
}

}  // namespace crier::redis
