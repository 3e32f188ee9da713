#include "nats/consumer.hpp"

#include "common/attempts_record.hpp"
#include "common/error_text.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <functional>
#include <iterator>
#include <utility>

namespace crier::nats {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// How long past a pull request's expiry its closing status may take to arrive.
constexpr milliseconds kPullGrace{2000};
// How long a request without expiry (answered at once) is waited for: one that is not answered
// by then is given up (its late answer is recognised as an earlier request's and ignored).
constexpr milliseconds kAnswerWait{200};
// How often a blocked read looks whether the consumer was closed.
constexpr milliseconds kReadSlice{50};
// How often held events are looked over for renewal, and the redrive consumer asked for
// redriven dead letters while the main one keeps delivering.
constexpr milliseconds kLookEvery{100};
// The server's limit on a consumer's unacknowledged messages (all its processes together;
// events the bus holds for a retry count too). Each process holds at most `window` more.
constexpr int kMaxAckPending = 20000;
// The most bytes one pull asks for (unless the server takes larger messages: then two of
// them). A server closes a client whose messages waiting to be written pass its max_pending
// (64 MiB by default) as a slow consumer, its publishes' connection with it; unbounded, a
// pull of 1,024 events of 500 KB did.
constexpr std::size_t kPullMaxBytes = 4u << 20;
// How long an event whose dead letter could not be stored waits before it comes back.
constexpr milliseconds kDeadLetterPause{5000};
// How often a consumer whose pulls go unanswered is looked up at most; one missing at two
// look-ups in a row is made again.
constexpr milliseconds kLookUpEvery{2000};

using crier::detail::attempts_of_record;
using crier::detail::record_of;
using crier::detail::unix_ms;

// One durable consumer's pull requests, each answered on an inbox subject of its own (so the
// status that ends a request is told from a late one that ends an earlier request). Used by
// one thread.
class Puller {
 public:
  // `tick` runs between reads, however long a pull takes: it renews held events. Messages
  // received while a request is still being answered are renewed every `renew_every` until
  // pull() returns them (the server may keep a request open long after its first message).
  Puller(std::shared_ptr<const Context> ctx, std::string durable, std::function<void()> tick, milliseconds renew_every)
      : ctx_(std::move(ctx)),
        tick_(std::move(tick)),
        renew_every_(renew_every),
        durable_(std::move(durable)),
        next_(ctx_->conn->api_subject("CONSUMER.MSG.NEXT." + ctx_->stream + "." + durable_)),
        inbox_(ctx_->conn->new_inbox()),
        max_bytes_(std::max(kPullMaxBytes, 2 * ctx_->conn->max_payload())) {
    const std::string replies = inbox_ + ".*";
    check(natsConnection_SubscribeSync(&sub_, ctx_->conn->raw(), replies.c_str()), "nats: pull inbox");
    (void)natsSubscription_SetPendingLimits(sub_, -1, -1);  // never drop a delivered message
  }

  // Hands back what is still on its way: the last request's messages are delivered, and
  // would otherwise wait for AckWait before another consumer got them.
  ~Puller() {
    const auto until = open_until_ + kPullGrace;
    int got = 0;  // of the last request, when it was sent ahead and not taken
    for (;;) {    // while the last request may deliver, then what is queued
      const auto left =
          open_ ? std::max<long long>(0, std::chrono::duration_cast<milliseconds>(until - Clock::now()).count()) : 0;
      natsMsg* raw = nullptr;
      if (natsSubscription_NextMsg(&raw, sub_, left) != NATS_OK) break;
      Msg m(raw);
      if (const int status = status_of(raw); status == 0) {
        release(raw);
        if (ahead_ > 0 && ++got == ahead_) open_ = false;  // it brought its whole batch
      } else if (status != 100 && reply_ == natsMsg_GetSubject(raw)) {
        open_ = false;  // the last request is over
      }
    }
    natsSubscription_Unsubscribe(sub_);
    ctx_->conn->destroy_unsubscribed(sub_);
  }

  // Up to `batch` messages, waiting up to `wait` for the first (0: answer at once): what is
  // there is taken at once, and the request ends as soon as it has handed something over.
  std::vector<Msg> pull(int batch, milliseconds wait, const std::atomic<bool>& closed) {
    if (ahead_ > 0) {  // the answer to the request sent ahead
      ahead_ = 0;
      Answer a = receive(closed);
      if (!a.msgs.empty() || closed.load(std::memory_order_acquire)) return std::move(a.msgs);
    }
    // A no_wait request with an expiry is nats-server's "one-shot": it waits up to the expiry
    // for the first message, hands over what is there, and ends. One without an expiry (wait
    // 0) is answered at once with 404 when nothing is pending; when something is but another
    // request takes it, the server keeps it until something comes: it is given up after
    // kAnswerWait.
    Answer a = request(batch, wait, closed);
    if (!a.msgs.empty() || !a.ended_early || wait.count() <= 0 || closed.load(std::memory_order_acquire))
      return std::move(a.msgs);
    // Refused at once (408 "Requests Pending": other requests wait for all that is pending):
    // wait for one message like them.
    return request(1, wait, closed, /*one_shot=*/false).msgs;
  }

  // Sends the next pull now, without waiting for it, so that the server delivers while the
  // caller decodes what came; the next pull() takes its answer. Its messages wait unrenewed
  // in the client until then: a caller sends ahead only what it takes next.
  void pull_ahead(int batch, milliseconds wait) {
    send_request(batch, wait, /*one_shot=*/true);
    ahead_ = batch;
  }
  // The size of the pull sent ahead and not taken yet; 0 when none.
  int ahead() const noexcept { return ahead_; }

  // Whether a pull since the last call went unanswered or was ended by the server (409):
  // what a consumer deleted under the bus does (the server answers no pull of it).
  bool went_unanswered() noexcept { return std::exchange(unanswered_, false); }

 private:
  struct Answer {
    std::vector<Msg> msgs;
    bool ended_early = false;  // ended by the server before its expiry
  };

  Answer request(int batch, milliseconds wait, const std::atomic<bool>& closed, bool one_shot = true) {
    send_request(batch, wait, one_shot);
    return receive(closed);
  }

  void send_request(int batch, milliseconds wait, bool one_shot) {
    reply_ = inbox_ + "." + std::to_string(++requests_);
    nlohmann::json req = {{"batch", batch}, {"max_bytes", max_bytes_}};
    if (wait.count() > 0) req["expires"] = ns_of(wait);
    if (one_shot) req["no_wait"] = true;
    ctx_->conn->send(next_, req.dump(), reply_.c_str());
    ctx_->conn->flush();
    sent_ = Clock::now();
    batch_ = batch;
    open_ = true;
    open_until_ = sent_ + wait;
    answer_until_ = wait.count() > 0 ? open_until_ + kPullGrace : sent_ + kAnswerWait;
  }

  // The answer to the last request sent: until it ended, or brought its batch.
  Answer receive(const std::atomic<bool>& closed) {
    Answer a;
    const int batch = batch_;
    a.msgs.reserve(static_cast<std::size_t>(batch));  // not grown message by message
    const auto until = answer_until_;
    auto renewed = sent_;
    while (static_cast<int>(a.msgs.size()) < batch && !closed.load(std::memory_order_acquire)) {
      const auto now = Clock::now();
      const auto left = std::chrono::duration_cast<milliseconds>(until - now);
      if (left.count() <= 0) {
        unanswered_ = unanswered_ || a.msgs.empty();
        break;
      }
      tick_();
      if (now - renewed >= renew_every_ && !a.msgs.empty()) {
        renewed = now;
        renew(a.msgs);
      }
      natsMsg* raw = nullptr;
      const natsStatus s = natsSubscription_NextMsg(&raw, sub_, std::min(left, kReadSlice).count());
      if (s == NATS_TIMEOUT) continue;
      ctx_->conn->check(s, "nats: reading consumer " + durable_);
      Msg m(raw);
      if (const int status = status_of(raw); status != 0) {
        // A heartbeat, or the end of an earlier request that was given up.
        if (status == 100 || reply_ != natsMsg_GetSubject(raw)) continue;
        open_ = false;  // 404 no messages, 408 expired or refused, 409 ...: this request is over
        a.ended_early = Clock::now() < open_until_;
        unanswered_ = unanswered_ || (status == 409 && !reached_max_bytes(raw));
        break;
      }
      a.msgs.push_back(std::move(m));
    }
    if (static_cast<int>(a.msgs.size()) == batch) open_ = false;
    return a;
  }

  // A 409 that ends a request because it brought its max_bytes: the consumer is there.
  static bool reached_max_bytes(natsMsg* status) {
    const char* description = nullptr;
    return natsMsgHeader_Get(status, "Description", &description) == NATS_OK && description != nullptr &&
           std::strstr(description, "MaxBytes") != nullptr;
  }

  void renew(const std::vector<Msg>& msgs) {
    for (const auto& m : msgs) {
      if (const char* reply = natsMsg_GetReply(m.get())) ctx_->conn->send(reply, "+WPI");
    }
    ctx_->conn->flush();
  }

  void release(natsMsg* m) {
    if (const char* reply = natsMsg_GetReply(m)) {
      try {
        ctx_->conn->send(reply, "-NAK");
      } catch (const std::exception&) {
        // Lost connection: the server redelivers it after AckWait.
      }
    }
  }

  std::shared_ptr<const Context> ctx_;
  std::function<void()> tick_;
  milliseconds renew_every_;
  std::string durable_, next_, inbox_;
  std::size_t max_bytes_;       // what a pull asks for at most
  std::string reply_;           // the last request's inbox subject
  std::uint64_t requests_ = 0;  // requests sent
  int batch_ = 0;               // the last request's size
  int ahead_ = 0;               // the size of the request sent ahead, until pull() takes it
  Clock::time_point sent_{}, answer_until_{};
  natsSubscription* sub_ = nullptr;
  bool open_ = false;        // the last request may still deliver
  bool unanswered_ = false;  // went_unanswered()
  Clock::time_point open_until_{};
};

// An event the bus holds.
struct Held {
  std::string reply{};  // the subject that settles it
  Clock::time_point renewed{};
  std::uint64_t lease = 0;  // the number of the lease that holds it; 0: the slot is free
  bool counted = false;     // against the window: handed out, not failed
};

// The consumer's bookkeeping that its leases reach, also after the consumer is gone. What is
// held sits in slots reused as events are settled (a reply subject is copied into the
// storage of the one before): nothing is allocated per event.
struct State {
  Mutex mu;
  CondVar cv;
  std::vector<Held> held CRIER_GUARDED_BY(mu);               // slots
  std::vector<std::size_t> free_slots CRIER_GUARDED_BY(mu);  // of `held`
  std::size_t outstanding CRIER_GUARDED_BY(mu) = 0;          // held and counted
  std::size_t untaken CRIER_GUARDED_BY(mu) = 0;              // fetched, not yet taken by the bus
  std::uint64_t next_lease CRIER_GUARDED_BY(mu) = 1;
  std::shared_ptr<const Context> ctx;

  // Holds the event that `reply` settles for a new lease, counted against the window;
  // returns its slot and number.
  std::pair<std::size_t, std::uint64_t> hold(const char* reply) CRIER_REQUIRES(mu) {
    std::size_t slot = held.size();
    if (free_slots.empty()) {
      held.emplace_back();
    } else {
      slot = free_slots.back();
      free_slots.pop_back();
    }
    Held& h = held[slot];
    h.reply.assign(reply);
    h.renewed = Clock::now();
    h.lease = next_lease;
    h.counted = true;
    ++outstanding;
    return {slot, next_lease++};
  }

  // How many events are held.
  std::size_t holding() const CRIER_REQUIRES(mu) { return held.size() - free_slots.size(); }

  // The event lease `number` holds in `slot`; nullptr when it holds none (settled already, or
  // handed back when the consumer went).
  Held* find(std::size_t slot, std::uint64_t number) CRIER_REQUIRES(mu) {
    return slot < held.size() && held[slot].lease == number ? &held[slot] : nullptr;
  }

  // Takes the event out of the books; `reply` is set to the subject that settles it (empty
  // when it is not held).
  void release(std::size_t slot, std::uint64_t number, std::string& reply) {
    reply.clear();
    {
      MutexLock lock(mu);
      Held* h = find(slot, number);
      if (!h) return;
      reply.assign(h->reply);
      if (h->counted) --outstanding;
      h->lease = 0;
      free_slots.push_back(slot);
    }
    cv.notify_all();
  }

  // Takes every held event out of the books; returns their reply subjects in the order they
  // were delivered.
  std::vector<std::string> release_all() {
    MutexLock lock(mu);
    std::vector<Held*> in_use;
    for (auto& h : held)
      if (h.lease != 0) in_use.push_back(&h);
    std::sort(in_use.begin(), in_use.end(), [](const Held* a, const Held* b) { return a->lease < b->lease; });
    std::vector<std::string> replies;
    for (Held* h : in_use) replies.push_back(std::move(h->reply));
    held.clear();
    free_slots.clear();
    outstanding = 0;
    return replies;
  }
};

class NatsLease final : public Lease {
 public:
  NatsLease(std::weak_ptr<State> state, std::size_t slot, std::uint64_t number, std::uint64_t seq, bool record)
      : state(std::move(state)), slot(slot), number(number), seq(seq), record(record) {}
  ~NatsLease() override {
    if (settled) return;
    auto s = state.lock();
    if (!s) return;
    std::string reply;
    s->release(slot, number, reply);
    if (reply.empty()) return;
    try {
      s->ctx->conn->send(reply, "-NAK");  // given up without an outcome: to any consumer now
    } catch (const std::exception&) {
      // Lost connection: the server redelivers it after AckWait.
    }
  }
  std::string position() const override { return std::to_string(seq); }

  std::weak_ptr<State> state;
  std::size_t slot;
  std::uint64_t number, seq;
  bool record;  // attempts records may exist for it
  bool settled = false;
};

std::string to_rfc3339(std::int64_t ns) {
  return format_time(Timestamp(std::chrono::duration_cast<Timestamp::duration>(nanoseconds(ns))));
}

class NatsConsumer final : public Consumer {
 public:
  NatsConsumer(std::shared_ptr<const Context> ctx, const ConsumerSpec& spec)
      : ctx_(std::move(ctx)),
        spec_(spec),
        durable_(durable_of(spec.subscriber, spec.event_type)),
        redrive_durable_(durable_ + "_r"),
        state_(std::make_shared<State>()),
        me_(Uuid::v7().to_string()) {
    state_->ctx = ctx_;
    ack_wait_ = ensure(durable_, ctx_->event_subject(spec.event_type), spec.start);
    (void)ensure(redrive_durable_, ctx_->redrive_subject(durable_), StartFrom::beginning());
    main_ = std::make_unique<Puller>(
        ctx_, durable_, [this] { renew(); }, ack_wait_ / 4);
    redrive_ = std::make_unique<Puller>(
        ctx_, redrive_durable_, [this] { renew(); }, ack_wait_ / 4);
  }

  ~NatsConsumer() override {
    close();
    // What the bus still holds goes back to the server now, in sequence order, confirmed
    // (an ack with a reply is answered once processed), before the turn is given up: the
    // next process of an ordered subscriber then gets the oldest first.
    for (const std::string& reply : state_->release_all()) {
      natsMsg* raw = nullptr;
      (void)natsConnection_Request(&raw, ctx_->conn->raw(), reply.c_str(), "-NAK", 4, 1000);
      natsMsg_Destroy(raw);
    }
    main_.reset();
    redrive_.reset();
    if (holds_turn_) {
      try {
        write_turn("", 0);
      } catch (const std::exception&) {
        // It runs out by itself.
      }
    }
  }

  std::vector<StoredEvent> fetch(std::size_t max, milliseconds wait) override {
    if (closed_.load(std::memory_order_acquire)) return {};
    renew();
    look_up(*main_, durable_, ctx_->event_subject(spec_.event_type), main_look_);
    look_up(*redrive_, redrive_durable_, ctx_->redrive_subject(durable_), redrive_look_);
    // A pull sent ahead holds its places in the window: it was sized to fit when sent.
    const int ahead = main_->ahead();
    const std::size_t room = free_room(static_cast<std::size_t>(ahead));
    if (ahead == 0 && (room == 0 || (spec_.ordered && !take_turn()))) {
      idle(wait);
      return {};
    }
    // Redriven dead letters are looked for every kLookEvery, before the main consumer: a
    // backlog that fills every batch must not keep them waiting until it is read.
    std::vector<Msg> msgs;
    if (Clock::now() >= next_redrive_ && room > 0) {
      next_redrive_ = Clock::now() + kLookEvery;
      msgs = redrive_->pull(static_cast<int>(std::min(max, room)), milliseconds(0), closed_);
    }
    const int batch = ahead > 0 ? ahead : static_cast<int>(std::min(max, room) - msgs.size());
    if (batch > 0 && !closed_.load(std::memory_order_acquire)) {
      // With redriven ones in hand, the main consumer is asked for what is there, not waited for.
      auto more = main_->pull(batch, msgs.empty() ? wait : kReadSlice, closed_);
      // A full batch: more is likely there. The next pull goes out before this one is
      // decoded, for what the window holds beside it (not for ordered subscribers: one
      // process at a time reads their events, and only while it holds the turn).
      if (static_cast<int>(more.size()) == batch && !spec_.ordered && !closed_.load(std::memory_order_acquire)) {
        const std::size_t next = std::min(max, free_room(msgs.size() + more.size()));
        if (next > 0) main_->pull_ahead(static_cast<int>(next), wait);
      }
      if (msgs.empty())
        msgs = std::move(more);
      else
        std::move(more.begin(), more.end(), std::back_inserter(msgs));
    }
    std::vector<StoredEvent> out;
    out.reserve(msgs.size());
    for (auto& m : msgs) {
      if (auto e = stored_of(m.get())) out.push_back(std::move(*e));
    }
    return out;
  }

  void ack(std::unique_ptr<Lease> lease) override {
    auto& l = static_cast<NatsLease&>(*lease);
    send(take(l), "+ACK");
    if (l.record) forget_attempts(l.seq);
  }

  void failed(Lease& lease, const Attempts& attempts) override {
    auto& l = static_cast<NatsLease&>(lease);
    publish_record(ctx_->attempts_subject(durable_, 'h', l.seq), attempts);
    l.record = true;
    {
      MutexLock lock(state_->mu);
      if (Held* h = state_->find(l.slot, l.number); h && h->counted) {
        h->counted = false;
        --state_->outstanding;
      }
    }
    state_->cv.notify_all();
  }

  bool redelivers() const noexcept override { return true; }

  void retry(std::unique_ptr<Lease> lease, const Attempts& attempts) override {
    auto& l = static_cast<NatsLease&>(*lease);
    publish_record(ctx_->attempts_subject(durable_, 'w', l.seq), attempts);
    const std::string& reply = take(l);
    const auto delay = std::max<std::int64_t>(
        0, std::chrono::duration_cast<nanoseconds>(attempts.retry_at - std::chrono::system_clock::now()).count());
    send(reply, "-NAK " + nlohmann::json({{"delay", delay}}).dump());
  }

  std::uint64_t dead_letter(std::unique_ptr<Lease> lease, const DeadLetter& letter) override {
    auto& l = static_cast<NatsLease&>(*lease);
    // Stored first, then the original ended: a crash between the two leaves it in both
    // places (redelivered, then dead-lettered again under the same id: stored once).
    Outgoing m = outgoing_of(*ctx_, letter.envelope, ctx_->dlq_subject(durable_),
                             durable_ + "-" + std::to_string(l.seq) + "-" + std::to_string(letter.attempts));
    m.headers.emplace_back("Crier-Subscriber", percent_encode(letter.subscriber));
    m.headers.emplace_back("Crier-Event-Type", letter.envelope.type);
    m.headers.emplace_back("Crier-Sequence", std::to_string(l.seq));
    m.headers.emplace_back("Crier-Attempts", std::to_string(letter.attempts));
    m.headers.emplace_back("Crier-First-Failure", format_time(letter.first_failure));
    m.headers.emplace_back("Crier-Last-Failure", format_time(letter.last_failure));
    m.headers.emplace_back("Crier-First-Error", "");
    m.headers.emplace_back("Crier-Last-Error", "");
    // The error texts, cut to fit what the server takes: the event itself always fits
    // (kDeadLetterRoom), and a letter that does not is one that cannot be stored.
    const std::size_t most = ctx_->conn->max_payload(), size = wire_size(m);
    const std::size_t room = most == 0 ? std::string::npos : (most - std::min(most, size)) / 2;
    m.headers[m.headers.size() - 2].second = percent_encode_within(letter.first_error, room);
    m.headers.back().second = percent_encode_within(letter.last_error, room);
    std::vector<std::uint64_t> seqs;
    try {
      if (most > 0 && size > most)
        throw Error(Errc::transport_error, "nats: the dead letter of event " + letter.envelope.id + " is " +
                                               std::to_string(size) + " bytes without its error texts; the server " +
                                               "takes at most " + std::to_string(most) + " (max_payload)");
      seqs = with_own_stream(*ctx_, ctx_->dlq_stream, [&] {
        return ctx_->conn->publish(ctx_->dlq_stream, {m}, "nats: dead-lettering event " + letter.envelope.id);
      });
    } catch (const std::exception&) {
      // Not stored: the event stays, and comes back after a pause rather than at once, so
      // that a lasting failure does not run its handler over and over.
      try {
        send(take(l), "-NAK " + nlohmann::json({{"delay", ns_of(kDeadLetterPause)}}).dump());
      } catch (const std::exception&) {
        // Lost connection: the server redelivers it after AckWait.
      }
      throw;
    }
    send(take(l), "+TERM");
    if (l.record) forget_attempts(l.seq);
    return seqs.front();
  }

  // Each pull is a round trip: 1024 at once consumed 5-9% faster than 512 (A/B, measured
  // 2026-12-04, with the window at twice the pull so that the next is sent ahead).
  std::size_t fetch_batch() const noexcept override { return 1024; }

  void taken(std::size_t n) override {
    MutexLock lock(state_->mu);
    state_->untaken -= std::min(n, state_->untaken);
  }

  // Caught up when nothing is left to deliver and every delivered event the server counts as
  // unacknowledged is one this process holds: delivered events still on their way to it
  // (on the wire, in cnats's queue) keep it from being caught up.
  // The server is asked first: what this process holds is counted after, so that events
  // acknowledged and pulled meanwhile cannot make the count look enough.
  bool caught_up() override {
    std::uint64_t unacknowledged = 0;
    for (const auto* d : {&durable_, &redrive_durable_}) {
      const auto info = info_of(*d);
      if (count_member(info, "num_pending") > 0) return false;
      unacknowledged += count_member(info, "num_ack_pending");
    }
    std::size_t held = 0;
    {
      MutexLock lock(state_->mu);
      if (state_->untaken > 0) return false;
      held = state_->holding();
    }
    // Retries waiting in the server: their attempts records (one message per subject).
    return unacknowledged <= held &&
           with_own_stream(*ctx_, ctx_->attempts_stream, [&] {
             return ctx_->conn->subject_count(ctx_->attempts_stream, ctx_->prefix + "-attempts." + durable_ + ".w.*");
           }) == 0;
  }

  std::uint64_t backlog() override {
    std::uint64_t n = 0;
    for (const auto* d : {&durable_, &redrive_durable_}) {
      const auto info = info_of(*d);
      n += count_member(info, "num_pending") + count_member(info, "num_ack_pending");
    }
    return n;
  }

  void close() noexcept override {
    {
      MutexLock lock(state_->mu);
      closed_.store(true, std::memory_order_release);
    }
    state_->cv.notify_all();
  }

 private:
  nlohmann::json info_of(const std::string& durable) {
    return ctx_->conn->api("CONSUMER.INFO." + ctx_->stream + "." + durable, nullptr,
                           "nats: consumer " + durable + " of stream " + ctx_->stream);
  }

  // Creates the durable consumer unless it exists; returns its AckWait.
  milliseconds ensure(const std::string& durable, const std::string& filter, const StartFrom& start) {
    nlohmann::json info;
    try {
      info = info_of(durable);
    } catch (const ApiError& e) {
      if (e.err_code != kConsumerNotFound) throw;
      info = create_consumer(*ctx_, durable, filter, start);
    }
    const auto& configured = member(member(info, "config"), "ack_wait");
    if (configured.is_null()) return ctx_->options().ack_wait;
    constexpr std::uint64_t kLongest = 1'000'000'000'000'000'000ULL;  // ns: 31 years, within an int64
    const std::uint64_t ns = std::min(count_of(configured, "ack_wait"), kLongest);
    return std::chrono::duration_cast<milliseconds>(nanoseconds(ns));
  }

  // A consumer deleted under the bus (by another client, an operator) answers no pull, and
  // would leave the subscriber waiting forever without a word. When pulls go unanswered it is
  // looked up (every kLookUpEvery at most); missing at two look-ups in a row (the inspector's
  // move() deletes and makes one again at once, and is not raced), it is made again from the
  // stream's start, so that nothing published meanwhile is lost, and said. Held events
  // settle nothing on the new consumer: they come again from it (at least once). A stream
  // that is missing, or a consumer that cannot be made again, throws: the bus reports it
  // (transport_failed) and fetches again.
  struct LookUp {
    Clock::time_point next{};
    bool missing = false;
  };
  void look_up(Puller& puller, const std::string& durable, const std::string& filter, LookUp& l) {
    const auto now = Clock::now();
    if (now < l.next || !puller.went_unanswered()) return;
    l.next = now + kLookUpEvery;
    try {
      (void)info_of(durable);
      l.missing = false;
      return;
    } catch (const ApiError& e) {
      if (e.err_code == kStreamNotFound)
        throw Error(Errc::transport_error, "nats: stream " + ctx_->stream + " is missing (deleted by another " +
                                               "client?): subscriber " + spec_.subscriber + " reads nothing until it " +
                                               "is made again (crier makes its streams when it connects)");
      if (e.err_code != kConsumerNotFound) return;
    } catch (const std::exception&) {
      return;  // the server unreachable, a leader not elected yet: pulls go on (a lost link says so)
    }
    if (!std::exchange(l.missing, true)) return;
    l.missing = false;
    const std::string what = "nats: consumer " + durable + " of stream " + ctx_->stream;
    try {
      (void)create_consumer(*ctx_, durable, filter, StartFrom::beginning());
    } catch (const std::exception& e) {
      throw Error(Errc::transport_error,
                  what + " is missing and cannot be made again: " + crier::detail::message_of(e));
    }
    ctx_->conn->notice(what + " was missing (deleted by another client?); made again, delivering from the " +
                       "stream's oldest event");
  }

  // Renews the server's AckWait of every event the bus holds (+WPI) every quarter of it: a
  // loaded machine may starve this thread for a while.
  // Called between every read of a pull: looks over the held events every kLookEvery only.
  void renew() {
    const auto now = Clock::now();
    if (now < next_look_) return;
    next_look_ = now + std::min(kLookEvery, ack_wait_ / 8);
    std::vector<std::string> due;
    {
      MutexLock lock(state_->mu);
      for (auto& h : state_->held) {
        if (h.lease == 0 || now - h.renewed < ack_wait_ / 4) continue;
        h.renewed = now;
        due.push_back(h.reply);
      }
    }
    for (const auto& reply : due) ctx_->conn->send(reply, "+WPI");
    // Written now rather than by cnats's flusher: on a starved machine a renewal that waits
    // for one more thread to be scheduled can arrive after AckWait ran out.
    if (!due.empty()) ctx_->conn->flush();
  }

  // Free places in the window, beside `coming` events on their way.
  std::size_t free_room(std::size_t coming) {
    MutexLock lock(state_->mu);
    const std::size_t window = std::max<std::size_t>(ctx_->options().window, 1);
    const std::size_t used = state_->outstanding + coming;
    return used >= window ? 0 : window - used;
  }

  // Waits up to `wait` for room in the window (a settled event) or close().
  void idle(milliseconds wait) {
    MutexLock lock(state_->mu);
    if (!closed_.load(std::memory_order_acquire)) (void)state_->cv.wait_until(state_->mu, Clock::now() + wait);
  }

  std::optional<StoredEvent> stored_of(natsMsg* m) {
    const char* reply = natsMsg_GetReply(m);
    const auto delivered = reply ? parse_delivery(reply) : std::nullopt;
    if (!delivered) return std::nullopt;  // not a JetStream delivery: nothing to settle
    const std::string_view subject = natsMsg_GetSubject(m);
    header_views_of(m, headers_);
    const HeaderViews& headers = headers_;
    // What a plain message's envelope is made of; built only for one (a CloudEvent has its own).
    PlainOrigin plain;
    auto plain_origin_of = [&]() -> const PlainOrigin& {
      if (plain.id.empty())
        plain = plain_origin(*ctx_, headers, spec_.event_type, delivered->seq, to_rfc3339(delivered->ns));
      return plain;
    };
    if (carried_as(headers) == Carried::plain) (void)plain_origin_of();
    StoredEvent e;
    try {
      e.envelope = envelope_of(headers, payload_of(m), plain);
      if (e.envelope.type != spec_.event_type)
        throw Error(Errc::invalid_envelope,
                    "its CloudEvents type '" + e.envelope.type + "' is not its subject's (" + spec_.event_type + ")");
    } catch (const std::exception& ex) {
      e.corrupt = "malformed event in stream " + ctx_->stream + " at sequence " + std::to_string(delivered->seq) +
                  " (subject " + std::string(subject) + "): " + crier::detail::message_of(ex);
      e.envelope = plain_envelope(headers, payload_of(m), plain_origin_of());
    }
    bool record = false;
    if (delivered->count > 1) {  // failed before, perhaps in a process that is gone
      for (char kind : {'w', 'h'}) {
        auto r = with_own_stream(*ctx_, ctx_->attempts_stream, [&] {
          return ctx_->conn->direct_get(ctx_->attempts_stream,
                                        {{"last_by_subj", ctx_->attempts_subject(durable_, kind, delivered->seq)}},
                                        "nats: attempts of event " + e.envelope.id);
        });
        if (!r) continue;
        e.attempts = attempts_of_record(r->payload);
        record = true;
        break;
      }
    }
    MutexLock lock(state_->mu);
    const auto [slot, number] = state_->hold(reply);
    ++state_->untaken;
    e.lease = std::make_unique<NatsLease>(state_, slot, number, delivered->seq, record);
    return e;
  }

  // Takes the lease out of the consumer's books, to be settled by the caller; returns the
  // subject that settles it (empty when it is not held any more) in a buffer of the calling
  // thread's, valid until its next take(): every ack passes through here.
  const std::string& take(Lease& lease) {
    auto& l = static_cast<NatsLease&>(lease);
    l.settled = true;
    thread_local std::string reply;
    state_->release(l.slot, l.number, reply);
    return reply;
  }

  void send(const std::string& reply, std::string_view what) {
    if (!reply.empty()) ctx_->conn->send(reply, what);
  }

  void publish_record(const std::string& subject, const Attempts& a) {
    with_own_stream(*ctx_, ctx_->attempts_stream, [&] {
      return ctx_->conn->publish(ctx_->attempts_stream, {Outgoing{subject, {}, record_of(a)}},
                                 "nats: recording the attempts of an event");
    });
  }

  void forget_attempts(std::uint64_t seq) {
    try {
      (void)ctx_->conn->api("STREAM.PURGE." + ctx_->attempts_stream,
                            {{"filter", ctx_->attempts_subject(durable_, '*', seq)}}, "nats: forgetting attempts");
    } catch (const std::exception&) {
      // Harmless: a settled event's record is never read again.
    }
  }

  // Ordered subscribers: one process at a time reads a (subscriber, type), so that no key's
  // later event is handed out while an earlier one is unfinished elsewhere. The turn is a
  // message compare-and-set on its subject; its holder renews it, and it runs out twice
  // AckWait after a holder died, when the events that holder had are delivered again.
  bool take_turn() {
    const auto now = Clock::now();
    if (holds_turn_ && now < turn_renew_at_) return true;
    const auto until = unix_ms(std::chrono::system_clock::now()) + 2 * ack_wait_.count();
    auto cur = with_own_stream(*ctx_, ctx_->attempts_stream, [&] {
      return ctx_->conn->direct_get(ctx_->attempts_stream, {{"last_by_subj", ctx_->turn_subject(durable_)}},
                                    "nats: whose turn it is");
    });
    if (cur) {
      // Written by crier processes, but any client may write to the stream: a record that
      // does not read holds no turn.
      const auto j = nlohmann::json::parse(cur->payload, nullptr, false);
      const std::string owner = text_member(j, "owner");
      const auto& until_ms = member(j, "until_ms");
      const std::int64_t ends = until_ms.is_number_integer() ? until_ms.get<std::int64_t>() : 0;
      if (!owner.empty() && owner != me_ && ends > unix_ms(std::chrono::system_clock::now())) {
        holds_turn_ = false;
        return false;
      }
    }
    turn_seq_ = cur ? cur->seq : 0;
    try {
      write_turn(me_, until);
    } catch (const ApiError& e) {
      if (e.err_code != kWrongLastSequence) throw;
      holds_turn_ = false;  // another process took it first
      return false;
    }
    holds_turn_ = true;
    turn_renew_at_ = now + ack_wait_ / 3;
    return true;
  }

  void write_turn(const std::string& owner, std::int64_t until_ms) {
    Outgoing m{ctx_->turn_subject(durable_),
               {{"Nats-Expected-Last-Subject-Sequence", std::to_string(turn_seq_)}},
               nlohmann::json({{"owner", owner}, {"until_ms", until_ms}}).dump()};
    turn_seq_ = with_own_stream(*ctx_, ctx_->attempts_stream, [&] {
                  return ctx_->conn->publish(ctx_->attempts_stream, {m}, "nats: taking the turn of " + durable_);
                }).front();
  }

  std::shared_ptr<const Context> ctx_;
  ConsumerSpec spec_;
  std::string durable_, redrive_durable_;
  std::shared_ptr<State> state_;
  std::string me_;
  milliseconds ack_wait_{};
  std::unique_ptr<Puller> main_, redrive_;
  std::atomic<bool> closed_{false};
  bool holds_turn_ = false;  // the fetch thread's
  std::uint64_t turn_seq_ = 0;
  Clock::time_point turn_renew_at_{};
  Clock::time_point next_look_{};     // renew(): the fetch thread's
  Clock::time_point next_redrive_{};  // fetch(): the fetch thread's
  LookUp main_look_, redrive_look_;   // look_up(): the fetch thread's
  HeaderViews headers_;               // stored_of(): the fetch thread's, reused
};

nlohmann::json consumer_config(const Context& ctx, const std::string& durable, const std::string& filter,
                               const StartFrom& start) {
  nlohmann::json c = {
      {"durable_name", durable},    {"ack_policy", "explicit"}, {"ack_wait", ns_of(ctx.options().ack_wait)},
      {"max_deliver", -1},          {"filter_subject", filter}, {"max_ack_pending", kMaxAckPending},
      {"replay_policy", "instant"}, {"deliver_policy", "all"}};
  switch (start.kind) {
    case StartFrom::Kind::beginning:
      break;
    case StartFrom::Kind::now:
      c["deliver_policy"] = "new";
      break;
    case StartFrom::Kind::position: {
      std::uint64_t seq = 0;
      const auto& p = start.position;
      if (p.empty() || std::from_chars(p.data(), p.data() + p.size(), seq).ptr != p.data() + p.size() || seq == 0)
        throw Error(Errc::invalid_argument, "nats: position '" + p + "' is not a stream sequence (1, 2, ...)");
      c["deliver_policy"] = "by_start_sequence";
      c["opt_start_seq"] = seq;
      break;
    }
    case StartFrom::Kind::time:
      c["deliver_policy"] = "by_start_time";
      c["opt_start_time"] = format_time(start.time);
      break;
  }
  return c;
}

}  // namespace

nlohmann::json create_consumer(const Context& ctx, const std::string& durable, const std::string& filter,
                               const StartFrom& start) {
  return ctx.conn->api("CONSUMER.DURABLE.CREATE." + ctx.stream + "." + durable,
                       {{"stream_name", ctx.stream}, {"config", consumer_config(ctx, durable, filter, start)}},
                       "nats: consumer " + durable + " of stream " + ctx.stream);
}

std::unique_ptr<Consumer> make_consumer(std::shared_ptr<const Context> ctx, const ConsumerSpec& spec) {
  return std::make_unique<NatsConsumer>(std::move(ctx), spec);
}

}  // namespace crier::nats
