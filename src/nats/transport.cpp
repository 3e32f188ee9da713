// crier::nats::connect: the JetStream transport, its dead letters and its inspector.
#include <crier/nats.hpp>
#include <crier/open.hpp>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <thread>

#include "nats/consumer.hpp"
#include "nats/context.hpp"

namespace crier::nats {

namespace {

using std::chrono::milliseconds;

// The most stored messages the tools ask for at once: one window of direct_get_many.
constexpr std::uint64_t kReadAhead = Connection::kAtOnce;

std::uint64_t parse_seq(std::string_view text, std::string_view what) {
  std::uint64_t seq = 0;
  if (text.empty() || std::from_chars(text.data(), text.data() + text.size(), seq).ptr != text.data() + text.size() ||
      seq == 0)
    throw Error(Errc::invalid_argument, std::string(what) + ": '" + std::string(text) +
                                            "' is not a position of this transport (a stream sequence: 1, 2, ...)");
  return seq;
}

const char* storage_name(Storage s) { return s == Storage::memory ? "memory" : "file"; }

// Which streams take `subjects`, in words ("stream A takes orders.>"), for an error that must
// say what is in the way; empty when the server will not say.
std::string streams_taking(Connection& conn, const nlohmann::json& subjects) {
  std::map<std::string, std::string> taken;  // stream -> the subjects it takes
  for (const auto& subject : subjects) {
    if (!subject.is_string()) continue;
    try {
      const auto names = conn.api("STREAM.NAMES", {{"subject", subject}}, "nats: streams taking " + subject.dump());
      for (const auto& n : member(names, "streams")) {
        if (!n.is_string()) continue;
        std::string& list = taken[n.get<std::string>()];
        list += (list.empty() ? "" : ", ") + subject.get<std::string>();
      }
    } catch (const Error&) {
      // Only the naming fails: the overlap is said all the same.
    }
  }
  std::string out;
  for (const auto& [stream, list] : taken) out += (out.empty() ? "stream " : "; stream ") + stream + " takes " + list;
  return out;
}

// Creates the stream. A cluster that is still forming, or has a node restarting, may know too
// few peers to place the replicas yet (10005, "no suitable peers for placement"): tried again
// with back-off until the publish timeout, then that error is thrown. Subjects another stream
// takes are refused naming that stream.
void create_stream(Connection& conn, const std::string& name, const nlohmann::json& config, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + conn.options().publish_timeout;
  auto backoff = kFirstBackoff;
  for (;;) {
    try {
      (void)conn.api("STREAM.CREATE." + name, config, what);
      return;
    } catch (const ApiError& e) {
      if (e.err_code == kSubjectsOverlap) {
        const std::string others = streams_taking(conn, member(config, "subjects"));
        throw Error(Errc::invalid_argument,
                    e.message() + (others.empty() ? "" : ": " + others) +
                        ". Two streams cannot share subjects: give this bus another subject prefix, or remove "
                        "the other stream");
      }
      const auto now = std::chrono::steady_clock::now();
      if (e.err_code != kNoSuitablePeers || now >= deadline) throw;
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(backoff, deadline - now));
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }
}

// A stream a tool needs and does not find: it makes none. `buses`: the crier buses that are
// there, if any.
[[noreturn]] void not_made(const std::string& what, const std::string& buses = "") {
  throw Error(Errc::not_found, what + " does not exist, and the tools make none (a bus's programs make its streams " +
                                   "when they connect)" +
                                   (buses.empty() ? ": is the name right?" : "; crier buses there: " + buses));
}

// The crier buses on the server, for a tool that named a stream that is not there: the
// streams beside which <name>_DLQ and <name>_ATTEMPTS exist (among the first 1024), as "A, B".
std::string buses_on_server(Connection& conn) {
  std::set<std::string> names;
  try {
    const auto answer = conn.api("STREAM.NAMES", nullptr, "nats: the server's streams");
    for (const auto& s : member(answer, "streams"))
      if (s.is_string()) names.insert(s.get<std::string>());
  } catch (const Error&) {  // a user the server lets list no streams: the name is said all the same
    return "";
  }
  std::string buses;
  for (const auto& n : names)
    if (names.count(n + "_DLQ") && names.count(n + "_ATTEMPTS")) buses += (buses.empty() ? "" : ", ") + n;
  return buses;
}

// Makes sure `name` exists as `config` says (with `create` false, only that it exists); a
// stream that exists otherwise is refused with each difference named, never changed. True
// when it made it.
bool ensure_stream(Connection& conn, const std::string& name, const nlohmann::json& config, bool create = true) {
  const std::string what = "nats: stream " + name;
  nlohmann::json info;
  try {
    info = conn.api("STREAM.INFO." + name, nullptr, what);
  } catch (const ApiError& e) {
    if (e.err_code != kStreamNotFound) throw;
    if (!create) not_made(what);
    create_stream(conn, name, config, what + " (creating it)");
    return true;
  }
  const auto& have = member(info, "config");
  std::vector<std::string> differences;
  auto compare = [&](const char* key) {
    const nlohmann::json& want = member(config, key);
    const nlohmann::json& got = member(have, key);
    if (want != got) differences.push_back(std::string(key) + " is " + got.dump() + ", not " + want.dump());
  };
  std::set<std::string> want_subjects, got_subjects;
  for (const auto& s : config["subjects"]) want_subjects.insert(s.get<std::string>());
  const auto& subjects = member(have, "subjects");
  for (const auto& s : subjects) got_subjects.insert(s.is_string() ? s.get<std::string>() : s.dump());
  if (want_subjects != got_subjects)
    differences.push_back("subjects are " + subjects.dump() + ", not " + config["subjects"].dump());
  for (const char* key : {"storage", "num_replicas", "max_age", "max_bytes", "duplicate_window", "discard",
                          "max_msgs_per_subject", "allow_direct", "retention"})
    if (config.contains(key)) compare(key);
  if (differences.empty()) return false;
  std::string text = "nats: stream " + name + " exists with another configuration: ";
  for (std::size_t i = 0; i < differences.size(); ++i) text += (i ? "; " : "") + differences[i];
  throw Error(Errc::invalid_argument,
              text + ". crier never changes a stream: change the options, or the stream (nats stream edit)");
}

nlohmann::json stream_config(const Options& o, const std::string& name, std::vector<std::string> subjects) {
  return {{"name", name},
          {"subjects", subjects},
          {"retention", "limits"},
          {"storage", storage_name(o.storage)},
          {"num_replicas", o.replicas},
          {"max_age", ns_of(o.max_age)},
          {"max_bytes", o.max_bytes},
          // A full stream refuses publishes (a clear error) rather than dropping old events.
          {"discard", o.max_bytes > 0 ? "new" : "old"},
          {"duplicate_window", ns_of(o.duplicate_window)},
          {"allow_direct", true}};
}

class NatsTransport final : public Transport, public DeadLetterQueue, public Inspector {
 public:
  explicit NatsTransport(std::shared_ptr<const Context> ctx) : ctx_(std::move(ctx)) {}

  std::string_view name() const noexcept override { return "nats"; }

  void append(std::span<const Envelope> events) override {
    std::vector<Outgoing> msgs;
    msgs.reserve(events.size());
    const std::size_t most = conn().max_payload();
    // A server that takes little (a max_payload of a few kB) keeps half for the letter.
    const std::size_t room = std::min(kDeadLetterRoom, most / 2);
    for (const Envelope& e : events) {
      msgs.push_back(outgoing_of(*ctx_, e, ctx_->event_subject(e.type), e.id));
      // Refused before anything of the batch is sent.
      if (const std::size_t size = wire_size(msgs.back()); most > 0 && size > most - room)
        throw Error(Errc::invalid_argument, "nats: event " + e.id + " is " + std::to_string(size) +
                                                " bytes as a message (headers and data); this server takes at most " +
                                                std::to_string(most) + " (its max_payload), of which crier keeps " +
                                                std::to_string(room) + " for the headers of a dead letter: at most " +
                                                std::to_string(most - room) +
                                                " bytes. Nothing of this publish was stored");
    }
    (void)conn().publish(ctx_->stream, msgs,
                         events.size() == 1 ? "nats: publishing event " + events.front().id
                                            : "nats: publishing " + std::to_string(events.size()) + " events");
  }

  std::unique_ptr<Consumer> consume(const ConsumerSpec& spec) override {
    ctx_->conn->require_ack_permission(ctx_->stream);
    return make_consumer(ctx_, spec);
  }
  DeadLetterQueue& dead_letter_queue() override { return *this; }
  Inspector& inspector() override { return *this; }

  TransportHealth health() const override { return ctx_->conn->health(); }
  std::shared_ptr<void> watch(HealthListener listener) override { return ctx_->conn->watch(std::move(listener)); }

  // --- dead letters ----------------------------------------------------------------------

  std::vector<DeadLetter> list(const DeadLetterFilter& filter) override {
    return with_own_stream(*ctx_, ctx_->dlq_stream, [&] { return read_letters(filter); });
  }

  std::vector<DeadLetter> read_letters(const DeadLetterFilter& filter) {
    std::vector<DeadLetter> out;
    auto take = [&](const Connection::Stored& m) {
      auto letter = letter_of(m);
      if (!letter) return;
      if (!filter.subscriber.empty() && letter->subscriber != filter.subscriber) return;
      if (!filter.event_type.empty() && letter->envelope.type != filter.event_type) return;
      out.push_back(std::move(*letter));
    };
    if (!filter.ids.empty()) {
      std::vector<nlohmann::json> requests;
      for (const auto id : filter.ids) requests.push_back({{"seq", id}});
      for (const auto& m : conn().direct_get_many(ctx_->dlq_stream, requests, "nats: reading dead letters"))
        if (m && m->subject.rfind(ctx_->prefix + "-dlq.", 0) == 0) take(*m);
      return out;
    }
    std::string subject = ctx_->prefix + "-dlq.>";
    if (!filter.subscriber.empty() && !filter.event_type.empty())
      subject = ctx_->dlq_subject(durable_of(filter.subscriber, filter.event_type));
    for_each(ctx_->dlq_stream, subject, 1, [&](const Connection::Stored& m) {
      take(m);
      return true;
    });
    return out;
  }

  std::size_t count(const DeadLetterFilter& filter) override {
    // Every letter, or one subscriber's of one type, is a subject the stream counts; other
    // filters are read.
    if (!filter.ids.empty() || filter.subscriber.empty() != filter.event_type.empty()) return list(filter).size();
    const std::string subject = filter.subscriber.empty()
                                    ? ctx_->prefix + "-dlq.>"
                                    : ctx_->dlq_subject(durable_of(filter.subscriber, filter.event_type));
    return with_own_stream(*ctx_, ctx_->dlq_stream, [&] { return conn().subject_count(ctx_->dlq_stream, subject); });
  }

  std::size_t redrive(const DeadLetterFilter& filter) override {
    const auto letters = list(filter);
    send_back(letters);
    return letters.size();
  }

  void redrive_edited(std::uint64_t id, std::string data) override {
    auto letters = list({.ids = {id}});
    if (letters.empty())
      throw Error(Errc::invalid_argument,
                  "nats: stream " + ctx_->dlq_stream + " has no dead letter " + std::to_string(id));
    letters.front().envelope.data = std::move(data);
    send_back(letters);
  }

  // To each one's subscriber's redrive subject, which only its consumers read (published
  // together, pipelined), then out of the dead letters. A fresh message id: the original's
  // would be taken for a duplicate of it.
  void send_back(const std::vector<DeadLetter>& letters) {
    if (letters.empty()) return;
    std::vector<Outgoing> messages;
    messages.reserve(letters.size());
    for (const DeadLetter& l : letters)
      messages.push_back(outgoing_of(*ctx_, l.envelope,
                                     ctx_->redrive_subject(durable_of(l.subscriber, l.envelope.type)),
                                     l.envelope.id + "-redrive-" + std::to_string(l.id)));
    (void)conn().publish(ctx_->stream, messages,
                         letters.size() == 1 ? "nats: redriving dead letter " + std::to_string(letters.front().id)
                                             : "nats: redriving " + std::to_string(letters.size()) +
                                                   " dead letters from id " + std::to_string(letters.front().id));
    remove_letters(letters);
  }

  std::size_t purge(const DeadLetterFilter& filter) override {
    const auto letters = list(filter);
    remove_letters(letters);
    return letters.size();
  }

  // --- inspector -------------------------------------------------------------------------

  std::vector<SubscriberStatus> subscribers() override {
    std::map<std::string, SubscriberStatus> by_durable;
    std::map<std::string, nlohmann::json> main_info;
    for (std::size_t offset = 0;;) {
      const auto page =
          conn().api("CONSUMER.LIST." + ctx_->stream, {{"offset", offset}}, "nats: consumers of " + ctx_->stream);
      const auto& consumers = member(page, "consumers");
      for (const auto& c : consumers) {
        std::string durable = text_member(c, "name");
        const bool redrive = durable.size() > 2 && durable.compare(durable.size() - 2, 2, "_r") == 0;
        if (redrive) durable.resize(durable.size() - 2);
        const auto names = parse_durable(durable);
        if (!names) continue;
        auto& s = by_durable[durable];
        s.subscriber = names->first;
        s.event_type = names->second;
        s.lag += count_member(c, "num_pending") + count_member(c, "num_ack_pending");
        s.in_flight += count_member(c, "num_ack_pending");
        // The server's last acknowledgement of either consumer (an ack, or a dead letter's
        // +TERM): when the subscriber last finished an event.
        if (const auto active = text_member(member(c, "ack_floor"), "last_active"); !active.empty()) {
          try {
            s.last_settled = std::max(s.last_settled, parse_time(active));
          } catch (const std::exception&) {
          }
        }
        if (!redrive) {
          const auto seq = count_member(member(c, "delivered"), "stream_seq");
          if (seq > 0) s.position = std::to_string(seq);
          main_info[durable] = c;
        }
      }
      offset += consumers.size();
      if (consumers.empty() || offset >= count_member(page, "total")) break;
    }
    std::vector<SubscriberStatus> out;
    for (auto& [name, s] : by_durable) {
      const std::string& durable = name;  // a structured binding cannot be captured (clang)
      s.retrying = with_own_stream(*ctx_, ctx_->attempts_stream, [&] {
        return conn().subject_count(ctx_->attempts_stream, ctx_->prefix + "-attempts." + durable + ".*.*");
      });
      s.in_flight -= std::min(s.in_flight, s.retrying);
      s.dead_letters = with_own_stream(
          *ctx_, ctx_->dlq_stream, [&] { return conn().subject_count(ctx_->dlq_stream, ctx_->dlq_subject(durable)); });
      if (s.lag > 0 && main_info.count(durable)) {
        const auto floor = count_member(member(main_info[durable], "ack_floor"), "stream_seq");
        if (auto first = conn().direct_get(ctx_->stream,
                                           {{"seq", floor + 1}, {"next_by_subj", ctx_->event_subject(s.event_type)}},
                                           "nats: oldest unfinished event");
            first && !first->time.empty()) {
          try {
            s.oldest_age = std::max(milliseconds(0), std::chrono::duration_cast<milliseconds>(
                                                         std::chrono::system_clock::now() - parse_time(first->time)));
          } catch (const std::exception&) {
          }
        }
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  std::vector<EventTypeStatus> event_types() override {
    std::vector<EventTypeStatus> out;
    const auto info = conn().api("STREAM.INFO." + ctx_->stream, {{"subjects_filter", ctx_->prefix + ".>"}},
                                 "nats: stream " + ctx_->stream);
    for (const auto& [subject, n] : member(member(info, "state"), "subjects").items()) {
      auto type = type_of_subject(ctx_->prefix, subject);
      if (!type) continue;
      EventTypeStatus t;
      t.event_type = *type;
      t.events = count_of(n, "the messages on " + subject);
      if (auto last = conn().direct_get(ctx_->stream, {{"last_by_subj", subject}}, "nats: newest " + *type)) {
        t.newest = std::to_string(last->seq);
        t.newest_time = readable(*last, *type).time;
      }
      out.push_back(std::move(t));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.event_type < b.event_type; });
    return out;
  }

  std::vector<StoredEnvelope> browse(const BrowseQuery& q) override {
    std::vector<StoredEnvelope> out;
    if (q.limit == 0) return out;
    const std::string subject = q.event_type.empty() ? ctx_->prefix + ".>" : ctx_->event_subject(q.event_type);
    std::optional<Timestamp> since;
    if (!q.since.empty()) since = parse_time(q.since);
    auto take = [&](const Connection::Stored& m) {
      const auto type = type_of_subject(ctx_->prefix, m.subject);
      if (!type || (!q.event_type.empty() && *type != q.event_type)) return;
      StoredEnvelope s;
      s.position = std::to_string(m.seq);
      s.envelope = readable(m, *type);
      if (since) {
        try {
          if (s.envelope.time.empty() || parse_time(s.envelope.time) < *since) return;
        } catch (const std::exception&) {
          return;
        }
      }
      out.push_back(std::move(s));
    };
    if (!q.newest_first) {
      const std::uint64_t from = q.from.empty() ? 1 : parse_seq(q.from, "nats: browse from");
      for_each(ctx_->stream, subject, from, [&](const Connection::Stored& m) {
        take(m);
        return out.size() < q.limit;
      });
      return out;
    }
    std::uint64_t seq = 0;
    if (!q.from.empty()) {
      seq = parse_seq(q.from, "nats: browse from");
    } else {
      const auto info = conn().api("STREAM.INFO." + ctx_->stream, nullptr, "nats: stream " + ctx_->stream);
      seq = count_member(member(info, "state"), "last_seq");
    }
    while (seq > 0 && out.size() < q.limit) {  // a window of sequences at a time, newest first
      const std::uint64_t n =
          std::min<std::uint64_t>(seq, std::clamp<std::uint64_t>(q.limit - out.size(), 16, kReadAhead));
      std::vector<nlohmann::json> requests;
      for (std::uint64_t i = 0; i < n; ++i) requests.push_back({{"seq", seq - i}});
      for (auto& m : conn().direct_get_many(ctx_->stream, requests, "nats: browsing " + ctx_->stream))
        if (m && out.size() < q.limit) take(*m);
      seq -= n;
    }
    return out;
  }

  void move(std::string_view subscriber, std::string_view event_type, std::string_view position) override {
    crier::detail::check_names(subscriber, event_type, "nats: move");
    const StartFrom start =
        position == "end" ? StartFrom::now() : StartFrom::at(std::to_string(parse_seq(position, "nats: move to")));
    const std::string durable = durable_of(subscriber, event_type);
    // A consumer's start cannot be edited: it is made again, under the same name, so that
    // every process reading it reads from the new place at its next pull.
    try {
      (void)conn().api("CONSUMER.DELETE." + ctx_->stream + "." + durable, nullptr, "nats: consumer " + durable);
    } catch (const ApiError& e) {
      if (e.err_code != kConsumerNotFound) throw;
    }
    (void)create_consumer(*ctx_, durable, ctx_->event_subject(event_type), start);
  }

  std::string publish_json(std::string_view cloudevent) override {
    const Envelope e = crier::detail::cloudevent_to_publish(cloudevent, "publish");
    append(std::span<const Envelope>(&e, 1));
    return e.id;
  }

 private:
  Connection& conn() const { return *ctx_->conn; }

  // A stored message's envelope as the tools show it: as sent, or, when it is not a valid
  // event, what can be read of it.
  Envelope readable(const Connection::Stored& m, const std::string& type) const {
    const PlainOrigin origin = plain_origin(*ctx_, m.headers, type, m.seq, m.time);
    try {
      return envelope_of(m.headers, m.payload, origin);
    } catch (const std::exception&) {
      return plain_envelope(m.headers, m.payload, origin);
    }
  }

  // Calls fn for the messages of `subject` from sequence `from` on, oldest first, while it
  // returns true. Read ahead: a window of requests, each for the first message of `subject`
  // at or after one sequence. Where the subject fills the stream each answers another
  // message; where it is sparse most answer the same one, so the window follows how many
  // different ones the last window brought.
  template <class Fn>
  void for_each(const std::string& stream, const std::string& subject, std::uint64_t from, Fn fn) {
    std::uint64_t window = 1;
    for (std::uint64_t seq = from;;) {  // seq: the first not given yet
      std::vector<nlohmann::json> requests;
      for (std::uint64_t i = 0; i < window; ++i) requests.push_back({{"seq", seq + i}, {"next_by_subj", subject}});
      std::uint64_t fresh = 0;
      for (auto& m : conn().direct_get_many(stream, requests, "nats: reading " + stream)) {
        if (!m) return;  // none at or after it: the end
        if (m->seq < seq) continue;
        ++fresh;
        if (!fn(*m)) return;
        seq = m->seq + 1;
      }
      window = std::clamp<std::uint64_t>(fresh * 2, 1, kReadAhead);
    }
  }

  std::optional<DeadLetter> letter_of(const Connection::Stored& m) const {
    const auto* type = header(m.headers, "Crier-Event-Type");
    if (!type) return std::nullopt;
    DeadLetter l;
    l.id = m.seq;
    auto text = [&](const char* name) {
      const auto* v = header(m.headers, name);
      return v ? std::string(*v) : std::string();
    };
    l.envelope = readable(m, std::string(*type));
    try {
      l.subscriber = percent_decode(text("Crier-Subscriber"), "Crier-Subscriber");
      l.first_error = percent_decode(text("Crier-First-Error"), "Crier-First-Error");
      l.last_error = percent_decode(text("Crier-Last-Error"), "Crier-Last-Error");
      l.attempts = std::atoi(text("Crier-Attempts").c_str());
      l.first_failure = parse_time(text("Crier-First-Failure"));
      l.last_failure = parse_time(text("Crier-Last-Failure"));
    } catch (const std::exception&) {
      // Shown with what could be read.
    }
    return l;
  }

  void remove_letters(const std::vector<DeadLetter>& letters) {
    std::vector<std::uint64_t> ids;
    for (const DeadLetter& l : letters) ids.push_back(l.id);
    conn().delete_messages(ctx_->dlq_stream, ids, "nats: dead letter");
  }

  std::shared_ptr<const Context> ctx_;
};

}  // namespace

void make_own_stream_again(const Context& ctx, const std::string& stream) {
  if (ensure_stream(*ctx.conn, stream, ctx.own_streams.at(stream)))
    ctx.conn->notice("nats: stream " + stream + " was missing (deleted by another client?); made again");
}

PlainOrigin plain_origin(const Context& ctx, const HeaderViews& headers, std::string event_type, std::uint64_t seq,
                         std::string time) {
  PlainOrigin p;
  p.event_type = std::move(event_type);
  const auto* id = header(headers, "Nats-Msg-Id");
  p.id = id ? std::string(*id) : ctx.stream + "-" + std::to_string(seq);
  p.source = "nats://" + ctx.stream;
  p.time = std::move(time);
  return p;
}

Outgoing outgoing_of(const Context& ctx, const Envelope& e, std::string subject, std::string msg_id) {
  Outgoing m;
  m.subject = std::move(subject);
  if (ctx.options().content_mode == ContentMode::structured) {
    m.headers.emplace_back("content-type", "application/cloudevents+json; charset=utf-8");
    m.payload = e.to_json();
  } else {
    m.event = &e;
  }
  // Percent-encoded as ce-id is: a header value ends at a line break (cnats sends one as a
  // space), and ids alike but for it would be taken for one event and stored once.
  m.headers.emplace_back("Nats-Msg-Id", needs_percent_encoding(msg_id) ? percent_encode(msg_id) : std::move(msg_id));
  return m;
}

const char* to_string(ConnectionState state) noexcept {
  switch (state) {
    case ConnectionState::connected:
      return "connected";
    case ConnectionState::disconnected:
      return "disconnected";
    case ConnectionState::reconnected:
      return "reconnected";
    case ConnectionState::closed:
      return "closed";
  }
  return "unknown";
}

namespace {

// What connect() and the tools' opener share: the options checked, the connection made.
std::shared_ptr<Context> make_context(const Options& options) {
  if (!is_valid_stream_name(options.stream))
    throw Error(Errc::invalid_name, "nats: stream name " + crier::detail::quoted_name(options.stream) +
                                        " is not 1 to 64 characters of [A-Za-z0-9_-]");
  if (!is_valid_subject_prefix(options.subject_prefix))
    throw Error(Errc::invalid_name, "nats: subject prefix " + crier::detail::quoted_name(options.subject_prefix) +
                                        " is not 1 to 64 characters of [A-Za-z0-9_-]");
  if (!options.domain.empty() && !is_valid_domain(options.domain))
    throw Error(Errc::invalid_name, "nats: JetStream domain " + crier::detail::quoted_name(options.domain) +
                                        " is not 1 to 64 characters of [A-Za-z0-9_-]");
  if (options.replicas < 1 || options.replicas > 5)
    throw Error(Errc::invalid_argument, "nats: replicas must be 1 to 5, not " + std::to_string(options.replicas));
  if (options.ack_wait < milliseconds(100))
    throw Error(Errc::invalid_argument, "nats: ack_wait must be at least 100 ms");
  if (options.window == 0 || options.max_in_flight == 0)
    throw Error(Errc::invalid_argument, "nats: window and max_in_flight must be at least 1");
  auto ctx = std::make_shared<Context>();
  ctx->conn = std::make_shared<Connection>(options);
  ctx->stream = options.stream;
  ctx->dlq_stream = options.stream + "_DLQ";
  ctx->attempts_stream = options.stream + "_ATTEMPTS";
  ctx->prefix = options.subject_prefix;
  return ctx;
}

// The bus's three streams as `options` and the context's prefix say: made where missing
// (`create`), else only required; one that exists otherwise is refused.
std::shared_ptr<Transport> open_streams(std::shared_ptr<Context> ctx, const Options& options, bool create) {
  Connection& conn = *ctx->conn;
  ensure_stream(conn, ctx->stream,
                stream_config(options, ctx->stream, {ctx->prefix + ".>", ctx->prefix + "-redrive.>"}), create);
  auto& dlq = ctx->own_streams[ctx->dlq_stream] = stream_config(options, ctx->dlq_stream, {ctx->prefix + "-dlq.>"});
  dlq["max_age"] = 0;  // dead letters wait for an operator
  auto& attempts = ctx->own_streams[ctx->attempts_stream] =
      stream_config(options, ctx->attempts_stream, {ctx->prefix + "-attempts.>"});
  attempts["max_age"] = 0;
  attempts["max_msgs_per_subject"] = 1;
  for (const auto& [name, config] : ctx->own_streams) ensure_stream(conn, name, config, create);
  return std::make_shared<NatsTransport>(std::move(ctx));
}

// The tools' way in (crier status, tail, dlq, publish): the bus's streams as they are, made
// with whatever settings its programs chose (replicas, storage, age, size, duplicate window),
// which the tools cannot know. A tool never makes a stream, as it never makes a SQLite store
// file. Without `prefix_given`, the subject prefix is read from the stream's subjects
// (`<prefix>.>` beside `<prefix>-redrive.>`).
std::shared_ptr<Transport> open_existing(Options options, bool prefix_given) {
  auto ctx = make_context(options);
  const std::string what = "nats: stream " + options.stream;
  nlohmann::json info;
  try {
    info = ctx->conn->api("STREAM.INFO." + options.stream, nullptr, what);
  } catch (const ApiError& e) {
    if (e.err_code != kStreamNotFound) throw;
    not_made(what, buses_on_server(*ctx->conn));
  }
  const auto& config = member(info, "config");
  options.storage = member(config, "storage") == "memory" ? Storage::memory : Storage::file;
  if (const auto& r = member(config, "num_replicas"); r.is_number_integer()) options.replicas = r.get<int>();
  if (const auto& a = member(config, "max_age"); a.is_number_integer())
    options.max_age = std::chrono::duration_cast<milliseconds>(std::chrono::nanoseconds(a.get<std::int64_t>()));
  if (const auto& b = member(config, "max_bytes"); b.is_number_integer()) options.max_bytes = b.get<std::int64_t>();
  if (const auto& d = member(config, "duplicate_window"); d.is_number_integer())
    options.duplicate_window =
        std::chrono::duration_cast<milliseconds>(std::chrono::nanoseconds(d.get<std::int64_t>()));
  if (!prefix_given) {
    std::set<std::string> subjects;
    for (const auto& s : member(config, "subjects"))
      if (s.is_string()) subjects.insert(s.get<std::string>());
    const std::string redrive = "-redrive.>";
    for (const auto& s : subjects)
      if (s.size() > redrive.size() && s.ends_with(redrive)) {
        const std::string prefix = s.substr(0, s.size() - redrive.size());
        if (is_valid_subject_prefix(prefix) && subjects.count(prefix + ".>"))
          ctx->prefix = options.subject_prefix = prefix;
      }
  }
  return open_streams(std::move(ctx), options, /*create=*/false);
}

}  // namespace

std::shared_ptr<Transport> connect(const Options& options) {
  return open_streams(make_context(options), options, /*create=*/true);
}

void register_scheme() {
  auto opener = [](const std::string& target, const OpenOptions&) -> std::shared_ptr<Transport> {
    const auto sep = target.find("://");
    const std::string scheme = target.substr(0, sep);
    std::string rest = target.substr(sep + 3);
    Options o;
    o.publish_timeout = std::chrono::seconds(5);
    std::string prefix;
    if (const auto q = rest.find('?'); q != std::string::npos) {
      const std::string query = rest.substr(q + 1);
      rest.resize(q);
      for (std::size_t from = 0; from <= query.size();) {
        const auto amp = std::min(query.find('&', from), query.size());
        const std::string pair = query.substr(from, amp - from);
        if (pair.starts_with("prefix="))
          prefix = pair.substr(7);
        else if (pair.starts_with("domain="))
          o.domain = pair.substr(7);
        else
          throw Error(Errc::invalid_argument, "'" + redacted_target(target) + "': '" + pair +
                                                  "' is not a query a NATS target takes: ?prefix=NAME&domain=DOMAIN");
        from = amp + 1;
      }
    }
    if (const auto slash = rest.find('/'); slash != std::string::npos) {
      o.stream = rest.substr(slash + 1);
      rest.resize(slash);
    }
    const bool prefix_given = !prefix.empty();
    if (!prefix_given) {  // until the stream says: its name in lower case, as the orders demo names them
      prefix = o.stream;
      std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    }
    o.subject_prefix = prefix;
    o.servers.clear();
    for (std::size_t from = 0; from <= rest.size();) {
      const auto comma = std::min(rest.find(',', from), rest.size());
      if (comma > from) o.servers.push_back(scheme + "://" + rest.substr(from, comma - from));
      from = comma + 1;
    }
    return open_existing(o, prefix_given);
  };
  register_transport("nats", opener);
  register_transport("tls", opener);
}

}  // namespace crier::nats
