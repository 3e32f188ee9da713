// crier::redis::connect: the Redis Streams transport, its dead letters and its inspector.
#include <crier/redis.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "redis/consumer.hpp"
#include "redis/context.hpp"
#include "redis/unread.hpp"

namespace crier::redis {

namespace {

using std::chrono::milliseconds;

bool is_valid_prefix(std::string_view p) {
  if (p.empty() || p.size() > 64) return false;
  return std::all_of(p.begin(), p.end(), [](char c) { return crier::detail::is_name_char(c); });
}

EntryId parse_position(std::string_view text, std::string_view what) {
  auto id = parse_entry_id(text);
  if (!id)
    throw Error(Errc::invalid_argument, std::string(what) + ": '" + std::string(text) +
                                            "' is not a position of this transport (a stream entry id: "
                                            "1700000000000-0)");
  return *id;
}

void check(const Reply& r, std::string_view what) {
  if (r.is_error()) throw Error(Errc::transport_error, std::string(what) + ": " + r.str);
}

// The value of `name` in an INFO reply ("name:value" lines); nullopt when it has none.
std::optional<std::string> info_field(const Reply& info, std::string_view name) {
  const std::string& text = info.str;
  for (std::size_t line = 0; line < text.size();) {
    const std::size_t end = std::min(text.find("\r\n", line), text.size());
    if (text.compare(line, name.size(), name) == 0 && line + name.size() < end && text[line + name.size()] == ':')
      return text.substr(line + name.size() + 1, end - line - name.size() - 1);
    line = end + 2;
  }
  return std::nullopt;
}

// A dead letter and where it is kept.
struct Located {
  DeadLetter letter;
  std::string key, entry;
};

class RedisTransport final : public Transport, public DeadLetterQueue, public Inspector {
 public:
  explicit RedisTransport(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}

  std::string_view name() const noexcept override { return "redis"; }

  void append(std::span<const Envelope> events) override {
    const Options& o = ctx_->options();
    const std::size_t chunk = std::max<std::size_t>(1, o.max_in_flight);
    for (std::size_t from = 0; from < events.size(); from += chunk)
      append_some(events.subspan(from, std::min(chunk, events.size() - from)));
  }

  std::unique_ptr<Consumer> consume(const ConsumerSpec& spec) override { return make_consumer(ctx_, spec); }
  DeadLetterQueue& dead_letter_queue() override { return *this; }
  Inspector& inspector() override { return *this; }
  TransportHealth health() const override { return conn().health(); }
  std::shared_ptr<void> watch(HealthListener listener) override { return conn().watch(std::move(listener)); }

  // --- dead letters ----------------------------------------------------------------------

  std::vector<DeadLetter> list(const DeadLetterFilter& filter) override {
    std::vector<DeadLetter> out;
    for (auto& l : letters(filter)) out.push_back(std::move(l.letter));
    return out;
  }

  std::size_t count(const DeadLetterFilter& filter) override {
    if (!filter.ids.empty()) return letters(filter).size();
    std::vector<Command> cmds;
    for (const auto& [sub, type] : subscriber_pairs())
      if (matches(filter, sub, type)) cmds.push_back({"XLEN", ctx_->named("dlq", sub, type)});
    std::size_t n = 0;
    for (const Reply& r : conn().pipeline(cmds, "redis: counting dead letters")) n += r.as_integer();
    return n;
  }

  std::size_t redrive(const DeadLetterFilter& filter) override {
    std::size_t n = 0;
    for (const auto& l : letters(filter)) n += move_letter(l, &l.letter.envelope);
    return n;
  }

  void redrive_edited(std::uint64_t id, std::string data) override {
    auto found = letters({.ids = {id}});
    if (found.empty())
      throw Error(Errc::invalid_argument, "redis: " + ctx_->prefix + " has no dead letter " + std::to_string(id));
    Envelope edited = found.front().letter.envelope;
    edited.data = std::move(data);
    (void)move_letter(found.front(), &edited);
  }

  std::size_t purge(const DeadLetterFilter& filter) override {
    std::size_t n = 0;
    for (const auto& l : letters(filter)) n += move_letter(l, nullptr);
    return n;
  }

  // --- inspector -------------------------------------------------------------------------

  std::vector<SubscriberStatus> subscribers() override {
    std::vector<SubscriberStatus> out;
    const auto now_ms = unix_ms(std::chrono::system_clock::now());
    for (const auto& [sub, type] : subscriber_pairs()) {
      const std::string main = ctx_->stream_key(type), redrive = ctx_->named("redrive", sub, type);
      const std::vector<Command> cmds = {{"XINFO", "GROUPS", main},
                                         {"XINFO", "GROUPS", redrive},
                                         {"XINFO", "STREAM", main},
                                         {"HLEN", ctx_->named("attempts", sub, type)},
                                         {"XLEN", ctx_->named("dlq", sub, type)},
                                         {"HGET", ctx_->key("settled"), sub + " " + type},
                                         {"XPENDING", main, sub},
                                         {"XPENDING", redrive, sub}};
      const auto r = conn().pipeline(cmds, "redis: subscriber " + sub + " of " + type);
      SubscriberStatus s;
      s.subscriber = sub;
      s.event_type = type;
      const auto info = r[0].is_error() ? std::nullopt : group_info(r[0], sub);
      const auto redrive_info = r[1].is_error() ? std::nullopt : group_info(r[1], sub);
      std::uint64_t pending = 0, unread = 0;
      if (info) {
        if (info->last_delivered != "0-0") s.position = info->last_delivered;
        pending += info->pending;
        unread += ctx_->unread->count(conn(), main, sub, *info, r[2]).unread;
      }
      if (redrive_info) {
        pending += redrive_info->pending;
        unread += redrive_info->lag_known ? redrive_info->lag : 0;
      }
      s.lag = pending + unread;
      s.retrying = std::min<std::uint64_t>(static_cast<std::uint64_t>(r[3].as_integer()), pending);
      s.in_flight = pending - s.retrying;
      s.dead_letters = static_cast<std::uint64_t>(r[4].as_integer());
      if (r[5].kind == Reply::Kind::string) s.last_settled = from_unix_ms(r[5].as_integer());
      // The oldest unfinished entry: the smallest pending id, else the next one to read.
      std::optional<EntryId> oldest;
      for (const Reply* p : {&r[6], &r[7]})
        if (!p->is_error() && p->elements.size() >= 2 && p->elements[1].kind == Reply::Kind::string)
          if (auto id = parse_entry_id(p->elements[1].str); id && (!oldest || *id < *oldest)) oldest = id;
      if (!oldest && unread > 0 && info) {
        const Reply next =
            conn().command({"XRANGE", main, "(" + info->last_delivered, "+", "COUNT", "1"}, "redis: next entry");
        if (!next.elements.empty()) oldest = parse_entry_id(next.elements[0].elements[0].str);
      }
      if (oldest)
        s.oldest_age = milliseconds(std::max<std::int64_t>(0, now_ms - static_cast<std::int64_t>(oldest->ms)));
      out.push_back(std::move(s));
    }
    return out;
  }

  std::vector<EventTypeStatus> event_types() override {
    std::vector<EventTypeStatus> out;
    const auto types = event_type_names();
    std::vector<Command> cmds;
    for (const auto& t : types) {
      cmds.push_back({"XLEN", ctx_->stream_key(t)});
      cmds.push_back({"XREVRANGE", ctx_->stream_key(t), "+", "-", "COUNT", "1"});
    }
    const auto r = conn().pipeline(cmds, "redis: event types");
    for (std::size_t i = 0; i < types.size(); ++i) {
      EventTypeStatus t;
      t.event_type = types[i];
      t.events = static_cast<std::uint64_t>(r[2 * i].as_integer());
      const Reply& newest = r[2 * i + 1];
      if (!newest.elements.empty() && newest.elements[0].elements.size() == 2) {
        t.newest = newest.elements[0].elements[0].str;
        const Fields fields = fields_of_reply(newest.elements[0].elements[1]);  // kept: `time` points into it
        if (const std::string* time = field(fields, "ce_time")) t.newest_time = *time;
      }
      if (t.events > 0 || !t.newest.empty()) out.push_back(std::move(t));
    }
    return out;
  }

  std::vector<StoredEnvelope> browse(const BrowseQuery& q) override {
    std::vector<StoredEnvelope> out;
    if (q.limit == 0) return out;
    std::optional<EntryId> from;
    if (!q.from.empty()) from = parse_position(q.from, "redis: browse from");
    std::optional<Timestamp> since;
    if (!q.since.empty()) since = parse_time(q.since);
    std::vector<std::string> types;
    if (q.event_type.empty())
      types = event_type_names();
    else
      types.push_back(q.event_type);
    // Each stream gives its first `limit` matches; entry ids order them across streams.
    std::vector<std::pair<EntryId, StoredEnvelope>> found;
    for (const auto& type : types) {
      const std::string key = ctx_->stream_key(type);
      std::string cursor = from ? from->text() : (q.newest_first ? "+" : "-");
      std::size_t matched = 0;
      while (matched < q.limit) {
        const Reply page = conn().command({q.newest_first ? "XREVRANGE" : "XRANGE", key, cursor,
                                           q.newest_first ? "-" : "+", "COUNT", std::to_string(kWalkPage)},
                                          "redis: browsing " + key);
        for (const Reply& e : page.elements) {
          if (e.elements.size() != 2 || matched >= q.limit) continue;
          const std::string& id = e.elements[0].str;
          StoredEnvelope s;
          s.position = id;
          s.envelope = readable(fields_of_reply(e.elements[1]), key, id, type);
          if (since && !at_or_after(s.envelope.time, *since)) continue;
          ++matched;
          found.emplace_back(parse_entry_id(id).value_or(EntryId{}), std::move(s));
        }
        if (page.elements.size() < kWalkPage) break;
        cursor = "(" + page.elements.back().elements[0].str;
      }
    }
    std::stable_sort(found.begin(), found.end(), [&](const auto& a, const auto& b) {
      return q.newest_first ? b.first < a.first : a.first < b.first;
    });
    for (auto& [id, s] : found) {
      if (out.size() >= q.limit) break;
      out.push_back(std::move(s));
    }
    return out;
  }

  void move(std::string_view subscriber, std::string_view event_type, std::string_view position) override {
    crier::detail::check_names(subscriber, event_type, "redis: move");
    const std::string id = position == "end" ? "$" : id_before(parse_position(position, "redis: move to"));
    const std::string key = ctx_->stream_key(event_type), sub(subscriber);
    const Reply r = conn().pipeline(std::vector<Command>{{"XGROUP", "SETID", key, sub, id}}, "redis: move").front();
    if (r.is_error("NOGROUP")) {
      const std::vector<Command> cmds = {
          {"XGROUP", "CREATE", key, sub, id, "MKSTREAM"},
          {"XGROUP", "CREATE", ctx_->named("redrive", sub, event_type), sub, "0", "MKSTREAM"},
          {"SADD", ctx_->key("subscribers"), sub + " " + std::string(event_type)},
          {"SADD", ctx_->key("types"), std::string(event_type)}};
      for (const Reply& c : conn().pipeline(cmds, "redis: move"))
        if (c.is_error() && !c.is_error("BUSYGROUP")) check(c, "redis: move " + sub);
      return;
    }
    check(r, "redis: move " + sub + " of " + key);
  }

  std::string publish_json(std::string_view cloudevent) override {
    const Envelope e = crier::detail::cloudevent_to_publish(cloudevent, "publish");
    append(std::span<const Envelope>(&e, 1));
    return e.id;
  }

  // Entries deleted from an event stream before a subscriber read them (trimmed by max_len,
  // or an operator's XTRIM or XDEL) never reach it; each such subscriber is said, with how many.
  // So is a server that keeps no append-only file: it loses what it acknowledged since its
  // last snapshot (all of it, without snapshots) when it stops.
  std::vector<std::string> notices() override {
    const auto pairs = subscriber_pairs();
    std::vector<Command> cmds;  // one round trip for them all
    for (const auto& [sub, type] : pairs) {
      cmds.push_back({"XINFO", "GROUPS", ctx_->stream_key(type)});
      cmds.push_back({"XINFO", "STREAM", ctx_->stream_key(type)});
    }
    cmds.push_back({"INFO", "persistence"});
    const auto r = conn().pipeline(cmds, "redis: subscribers' losses");
    std::vector<std::string> out;
    if (info_field(r.back(), "aof_enabled") == "0")
      out.push_back("the server at " + conn().endpoint().text +
                    " keeps no append-only file (appendonly no): the events it stored since its last snapshot, "
                    "if it takes any, are lost when it restarts or crashes; give it appendonly yes");
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const auto& [sub, type] = pairs[i];
      const auto group = r[2 * i].is_error() ? std::nullopt : group_info(r[2 * i], sub);
      if (!group) continue;
      const std::uint64_t lost = ctx_->unread->count(conn(), ctx_->stream_key(type), sub, *group, r[2 * i + 1]).lost;
      if (lost > 0)
        out.push_back("subscriber " + sub + " of " + type + " lost " + std::to_string(lost) +
                      (lost == 1 ? " event" : " events") + ": deleted from " + ctx_->stream_key(type) +
                      " before it read them (trimmed by max_len, or by an XTRIM or XDEL)");
    }
    return out;
  }

 private:
  Connection& conn() const { return *ctx_->conn; }

  // Stores the events in one pipeline. A link lost while they were out is not blindly sent
  // again: with the guard (dedup_window) the scripts skip what was stored; without it, the
  // streams' newest entries are searched for the event ids whose reply was lost, and only
  // those not found are sent again. Either way each event is stored once.
  void append_some(std::span<const Envelope> events) {
    const Options& o = ctx_->options();
    const bool guarded = o.dedup_window.count() > 0;
    const std::string what = events.size() == 1 ? "redis: publishing event " + events.front().id
                                                : "redis: publishing " + std::to_string(events.size()) + " events";
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    std::vector<std::size_t> todo(events.size());
    for (std::size_t i = 0; i < todo.size(); ++i) todo[i] = i;
    std::string lost_why;  // the last loss, in words
    conn().begin_publish(events.size());
    struct Done {
      Connection& c;
      std::size_t n;
      ~Done() { c.end_publish(n); }
    } done{conn(), events.size()};
    for (;;) {
      std::vector<Command> cmds = {types_command(events)};
      for (std::size_t i : todo) cmds.push_back(write_command(events[i]));
      const std::size_t writes = todo.size();
      milliseconds wait_for{0};  // WAIT's timeout, when replicas are asked for
      if (o.replicas > 0) {
        // WAIT counts the replicas that have this link's last write, and the writes may have
        // stored nothing (events stored by a link lost since, or that the guard has seen):
        // the link's last write is a PUBLISH, which the primary passes on to its replicas
        // after whatever it stored before.
        cmds.push_back({"PUBLISH", ctx_->key("replicated"), ""});
        wait_for = std::max(milliseconds(1),
                            std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()));
        cmds.push_back({"WAIT", std::to_string(o.replicas), std::to_string(wait_for.count())});
      }
      std::vector<Reply> replies;
      bool whole = true;
      try {
        replies = conn().pipeline_once(cmds, what, wait_for);
      } catch (const Interrupted& e) {
        replies = e.answered;
        whole = false;
        lost_why = e.message();
      } catch (const LinkError& e) {
        whole = false;
        lost_why = e.message();
      }
      // A refused write fails the publish: the first event refused is said (the set of event
      // types only when no event was), and how many of them Redis stored.
      std::optional<std::size_t> refused;
      std::size_t stored = events.size() - todo.size();  // by earlier attempts
      // The writes answered (the replies after the SADD, up to the PUBLISH and WAIT).
      const std::size_t answered = replies.empty() ? 0 : std::min(replies.size() - 1, writes);
      for (std::size_t r = 1; r <= answered; ++r) {
        if (!replies[r].is_error())
          ++stored;
        else if (!refused)
          refused = r;
      }
      if (!refused)
        for (std::size_t r = 0; r < replies.size(); ++r)
          if ((r == 0 || r > writes) && replies[r].is_error()) refused = r;
      if (refused) {
        std::string which = "the set of event types " + ctx_->key("types");
        if (*refused > writes)
          which = "the wait for " + std::to_string(o.replicas) + (o.replicas == 1 ? " replica" : " replicas");
        else if (*refused > 0) {
          const Envelope& e = events[todo[*refused - 1]];
          which = "event " + e.id + " (stream " + ctx_->stream_key(e.type) + ")";
        }
        const std::string kept =
            events.size() == 1
                ? (stored == 1 ? "the event itself was stored" : "it was not stored")
                : std::to_string(stored) + " of the " + std::to_string(events.size()) + " events were stored";
        throw Error(Errc::transport_error, what + ": " + which + " was refused: " + replies[*refused].str +
                                               refusal_hint(replies[*refused]) + "; " + kept);
      }
      if (whole) {
        if (o.replicas > 0) require_replicated(replies.back().integer, events.size(), what, wait_for);
        return;
      }
      // Those after the last reply may or may not be stored.
      todo.erase(todo.begin(), todo.begin() + static_cast<std::ptrdiff_t>(answered));
      if (std::chrono::steady_clock::now() > deadline)
        throw Error(Errc::transport_error,
                    what + ": the link to redis at " + conn().endpoint().text +
                        " was lost and not regained within the timeout (" + std::to_string(o.timeout.count()) +
                        " ms; last: " + lost_why + "); " +
                        (todo.empty() ? std::string("whether the replicas have the events is not known")
                                      : std::to_string(todo.size()) + (todo.size() == 1 ? " event" : " events") +
                                            " may not be stored"));
      if (!guarded) todo = not_stored(events, std::move(todo));
      if (todo.empty() && o.replicas == 0) return;  // else the replicas are asked on the new link
    }
  }

  // Fails a publish whose events (stored on the primary) fewer than Options::replicas
  // replicas confirmed (`confirmed`, WAIT's answer) within `waited`.
  void require_replicated(long long confirmed, std::size_t events, const std::string& what, milliseconds waited) {
    const int asked = ctx_->options().replicas;
    if (confirmed >= asked) return;
    std::string connected = "?";
    try {
      if (const auto n = info_field(conn().command({"INFO", "replication"}, "redis: replicas"), "connected_slaves"))
        connected = *n;
    } catch (const Error&) {
    }
    const std::string it = events == 1 ? "it" : "them";
    throw Error(Errc::transport_error, what + ": stored on the primary, but " + std::to_string(confirmed) + " of the " +
                                           std::to_string(asked) + (asked == 1 ? " replica" : " replicas") +
                                           " asked for (Options::replicas) confirmed " + it + " within " +
                                           std::to_string(waited.count()) + " ms (the primary at " +
                                           conn().endpoint().text + " has " + connected +
                                           " connected now); a failover to a replica could lose " + it +
                                           ", and publishing " + it + " again may store " + it + " twice");
  }

  // SADD of the batch's event types to the set the tools list (one command per batch).
  Command types_command(std::span<const Envelope> events) const {
    std::vector<std::string_view> types;
    for (const Envelope& e : events)
      if (std::find(types.begin(), types.end(), e.type) == types.end()) types.push_back(e.type);
    Command sadd = {"SADD", ctx_->key("types")};
    sadd.append(types.begin(), types.end());
    return sadd;
  }

  // The write of one event: XADD, or the guarded script.
  Command write_command(const Envelope& e) const {
    const Options& o = ctx_->options();
    if (o.dedup_window.count() > 0) {
      std::vector<std::string> args = {std::to_string(o.dedup_window.count()), std::to_string(o.max_len)};
      visit_fields(e, [&](std::string_view name, std::string_view value) {
        args.emplace_back(name);
        args.emplace_back(value);
      });
      return conn().eval(ctx_->scripts.publish, {ctx_->stream_key(e.type), ctx_->key("seen") + ":" + e.id},
                         std::move(args));
    }
    Command xadd = {"XADD", ctx_->stream_key(e.type)};
    xadd.reserve(e.id.size() + e.source.size() + e.type.size() + e.time.size() + e.data.size() + 256);
    if (o.max_len > 0) xadd.append({"MAXLEN", "~", std::to_string(o.max_len)});
    xadd.push_back("*");
    visit_fields(e, [&](std::string_view name, std::string_view value) {
      xadd.push_back(name);
      xadd.push_back(value);
    });
    return xadd;
  }

  // Which of events[todo] are not in their streams: each stream is read from its newest
  // entry back to a minute before the oldest of them (by their time attribute, which this
  // process wrote), at most kSearched entries (past that, an event not found is taken as not
  // stored: a duplicate is possible, a loss is not).
  std::vector<std::size_t> not_stored(std::span<const Envelope> events, std::vector<std::size_t> todo) {
    constexpr std::size_t kSearched = 100000;
    std::map<std::string, std::vector<std::size_t>> by_type;
    for (std::size_t i : todo) by_type[events[i].type].push_back(i);
    std::set<std::string> found;
    for (const auto& [type, which] : by_type) {
      Timestamp floor = Timestamp::max();
      bool bounded = true;
      try {
        for (std::size_t i : which) floor = std::min(floor, parse_time(events[i].time) - std::chrono::minutes(1));
      } catch (const std::exception&) {
        bounded = false;  // an event without a time: searched as far as kSearched
      }
      const std::string key = ctx_->stream_key(type);
      std::string cursor = "+";
      for (std::size_t searched = 0; searched < kSearched;) {
        const Reply page = conn().command({"XREVRANGE", key, cursor, "-", "COUNT", std::to_string(kWalkPage)},
                                          "redis: looking for events whose publish was cut off");
        bool older = false;
        for (const Reply& e : page.elements) {
          if (e.elements.size() != 2) continue;
          const Fields f = fields_of_reply(e.elements[1]);
          if (const std::string* id = field(f, "ce_id")) found.insert(*id);
          if (const std::string* time = field(f, "ce_time"); bounded && time && !at_or_after(*time, floor))
            older = true;
        }
        searched += page.elements.size();
        if (older || page.elements.size() < kWalkPage) break;
        cursor = "(" + page.elements.back().elements[0].str;
      }
    }
    std::vector<std::size_t> out;
    for (std::size_t i : todo)
      if (!found.count(events[i].id)) out.push_back(i);
    return out;
  }

  // Every (subscriber, type) that has a group.
  std::vector<std::pair<std::string, std::string>> subscriber_pairs() {
    const Reply r = conn().command({"SMEMBERS", ctx_->key("subscribers")}, "redis: subscribers");
    std::vector<std::pair<std::string, std::string>> out;
    for (const Reply& m : r.elements) {
      const auto space = m.str.find(' ');
      if (space == std::string::npos) continue;
      out.emplace_back(m.str.substr(0, space), m.str.substr(space + 1));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::string> event_type_names() {
    const Reply r = conn().command({"SMEMBERS", ctx_->key("types")}, "redis: event types");
    std::vector<std::string> out;
    for (const Reply& m : r.elements)
      if (is_valid_event_type(m.str)) out.push_back(m.str);
    std::sort(out.begin(), out.end());
    return out;
  }

  static bool matches(const DeadLetterFilter& f, const std::string& sub, const std::string& type) {
    return (f.subscriber.empty() || f.subscriber == sub) && (f.event_type.empty() || f.event_type == type);
  }

  static bool at_or_after(const std::string& time, Timestamp since) {
    try {
      return !time.empty() && parse_time(time) >= since;
    } catch (const std::exception&) {
      return false;
    }
  }

  Envelope readable(const Fields& fields, const std::string& key, const std::string& id,
                    const std::string& type) const {
    try {
      return envelope_of(fields);
    } catch (const std::exception&) {
      return readable_envelope(fields, key, id, type);
    }
  }

  std::vector<Located> letters(const DeadLetterFilter& filter) {
    std::vector<Located> out;
    auto take = [&](const std::string& key, const Reply& entry) {
      if (entry.elements.size() != 2) return;
      const Fields fields = fields_of_reply(entry.elements[1]);
      auto text = [&](const char* name) {
        const std::string* v = field(fields, name);
        return v ? *v : std::string();
      };
      Located l;
      l.key = key;
      l.entry = entry.elements[0].str;
      DeadLetter& d = l.letter;
      d.id = static_cast<std::uint64_t>(std::strtoull(text("crier_dead_letter_id").c_str(), nullptr, 10));
      d.subscriber = text("crier_subscriber");
      d.envelope = readable(fields, key, l.entry, text("crier_event_type"));
      d.attempts = std::atoi(text("crier_attempts").c_str());
      d.first_error = text("crier_first_error");
      d.last_error = text("crier_last_error");
      try {
        d.first_failure = parse_time(text("crier_first_failure"));
        d.last_failure = parse_time(text("crier_last_failure"));
      } catch (const std::exception&) {
        // Shown with what could be read.
      }
      if (!matches(filter, d.subscriber, d.envelope.type)) return;
      out.push_back(std::move(l));
    };
    if (!filter.ids.empty()) {
      Command hmget = {"HMGET", ctx_->key("dlq_ids")};
      for (auto id : filter.ids) hmget.push_back(std::to_string(id));
      const Reply where = conn().command(hmget, "redis: dead letters");
      for (const Reply& w : where.elements) {
        const auto space = w.str.find(' ');
        if (w.kind != Reply::Kind::string || space == std::string::npos) continue;
        const std::string key = w.str.substr(0, space), entry = w.str.substr(space + 1);
        const Reply r = conn().command({"XRANGE", key, entry, entry}, "redis: dead letter");
        for (const Reply& e : r.elements) take(key, e);
      }
      return out;
    }
    for (const auto& [sub, type] : subscriber_pairs()) {
      if (!matches(filter, sub, type)) continue;
      const std::string key = ctx_->named("dlq", sub, type);
      std::string cursor = "-";
      for (;;) {
        const Reply page = conn().command({"XRANGE", key, cursor, "+", "COUNT", std::to_string(kWalkPage)},
                                          "redis: dead letters of " + sub);
        for (const Reply& e : page.elements) take(key, e);
        if (page.elements.size() < kWalkPage) break;
        cursor = "(" + page.elements.back().elements[0].str;
      }
    }
    std::sort(out.begin(), out.end(), [](const Located& a, const Located& b) { return a.letter.id < b.letter.id; });
    return out;
  }

  // Out of the dead letters; with `event`, to the subscriber's redrive stream (its consumers
  // alone read it) at once. 1 when the letter was there.
  std::size_t move_letter(const Located& l, const Envelope* event) {
    std::vector<std::string> args{l.entry, std::to_string(l.letter.id)};
    if (event)
      for (auto& [name, value] : fields_of(*event)) {
        args.push_back(std::move(name));
        args.push_back(std::move(value));
      }
    const Command c =
        conn().eval(ctx_->scripts.send_back,
                    {l.key, ctx_->key("dlq_ids"), ctx_->named("redrive", l.letter.subscriber, l.letter.envelope.type)},
                    std::move(args));
    const Reply r =
        conn().pipeline(std::span<const Command>(&c, 1), "redis: dead letter " + std::to_string(l.letter.id)).front();
    check(r, "redis: dead letter " + std::to_string(l.letter.id));
    return static_cast<std::size_t>(r.as_integer());
  }

  std::shared_ptr<Context> ctx_;
};

// The context of a connection to the server `options` names, its scripts loaded: options
// checked, the server's version, cluster mode and eviction policy too.
std::shared_ptr<Context> open_context(const Options& options) {
  if (!is_valid_prefix(options.prefix))
    throw Error(Errc::invalid_name, "redis: prefix " + crier::detail::quoted_name(options.prefix) +
                                        " is not 1 to 64 characters of [A-Za-z0-9_-]");
  if (options.visibility_timeout < milliseconds(100))
    throw Error(Errc::invalid_argument, "redis: visibility_timeout must be at least 100 ms");
  if (options.window == 0 || options.max_in_flight == 0)
    throw Error(Errc::invalid_argument, "redis: window and max_in_flight must be at least 1");
  if (options.timeout < milliseconds(100))
    throw Error(Errc::invalid_argument, "redis: timeout must be at least 100 ms");
  if (options.replicas < 0) throw Error(Errc::invalid_argument, "redis: replicas must be 0 or more");
  auto ctx = std::make_shared<Context>();
  ctx->conn = std::make_shared<Connection>(options);
  ctx->prefix = options.prefix;
  ctx->unread = std::make_shared<UnreadCounter>();
  // Streams with consumer-group lag and XAUTOCLAIM's list of deleted entries: Redis 7.
  const std::string where = ctx->conn->endpoint().text;
  const auto version = info_field(ctx->conn->command({"INFO", "server"}, "redis: server version"), "redis_version");
  if (!version || std::atoi(version->c_str()) < 7)
    throw Error(Errc::transport_error, "redis: the server at " + where + " runs Redis " +
                                           (version ? *version : std::string("of an unknown version")) +
                                           "; crier needs 7.0 or newer");
  // A cluster refuses a command or script whose keys lie in several hash slots (CROSSSLOT), as
  // crier's reads and scripts do: publishing would work while no subscriber could ever read.
  if (info_field(ctx->conn->command({"INFO", "cluster"}, "redis: cluster mode"), "cluster_enabled") == "1")
    throw Error(Errc::transport_error,
                "redis: the server at " + where +
                    " is a Redis Cluster node (cluster_enabled:1), which crier does not support: its reads and "
                    "scripts use keys of several hash slots, which a cluster refuses (CROSSSLOT). Give crier a "
                    "standalone server, or a primary with replicas");
  // A server that evicts any key when it reaches maxmemory may delete a stream whose events
  // no subscriber has handled yet, without a word: refused unless the program accepts that.
  const Reply memory = ctx->conn->command({"INFO", "memory"}, "redis: memory settings");
  const auto limit = info_field(memory, "maxmemory");
  const auto policy = info_field(memory, "maxmemory_policy");
  if (!options.allow_eviction && limit && *limit != "0" && policy && policy->starts_with("allkeys-"))
    throw Error(Errc::transport_error,
                "redis: the server at " + where + " evicts any key when it reaches maxmemory (maxmemory " + *limit +
                    " bytes, maxmemory-policy " + *policy +
                    "): it could delete streams of events not yet handled. Use a server with maxmemory-policy "
                    "noeviction (or a volatile-* policy: crier's streams have no expiry), or set "
                    "Options::allow_eviction to accept the loss");
  load_scripts(*ctx);
  return ctx;
}

// The prefixes of the crier buses on the server (those with a set of event types), by SCAN:
// sorted, looking at no more than `most_keys` keys (`more` says when there were more).
std::vector<std::string> buses_on_server(Connection& conn, std::size_t most_keys, bool& more) {
  std::vector<std::string> prefixes;
  std::string cursor = "0";
  std::size_t looked = 0;
  do {
    const Reply r = conn.command({"SCAN", cursor, "MATCH", "*:_types", "COUNT", "1000"}, "redis: looking for buses");
    if (r.elements.size() != 2) break;
    cursor = r.elements[0].str;
    for (const Reply& key : r.elements[1].elements)
      if (std::string p = key.str.substr(0, key.str.size() - 7); is_valid_prefix(p)) prefixes.push_back(std::move(p));
    looked += 1000;
  } while (cursor != "0" && looked < most_keys);
  more = cursor != "0";
  std::sort(prefixes.begin(), prefixes.end());
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  return prefixes;
}

// A tool's look at a prefix where no program published or subscribed: it is no bus (most
// likely the prefix was left out or mistyped), said with the buses that are there. The tools
// make no bus, as they make no SQLite store and no NATS stream.
void require_bus(Context& ctx) {
  const Reply n = ctx.conn->command({"EXISTS", ctx.key("types"), ctx.key("subscribers")}, "redis: looking for the bus");
  if (n.as_integer() > 0) return;
  std::string others;
  try {
    bool more = false;
    std::string there;
    for (const auto& p : buses_on_server(*ctx.conn, 100'000, more))
      there += (there.empty() ? "" : ", ") + crier::detail::quoted_name(p);
    others = there.empty() ? "; no other prefix has one"
                           : "; buses there have prefix " + there + " (name one with ?prefix=)";
    if (more) others += " among the first 100000 keys";
  } catch (const Error&) {  // an ACL user without SCAN: the prefix is said all the same
  }
  throw Error(Errc::not_found, "redis: no crier bus with prefix " + crier::detail::quoted_name(ctx.prefix) + " at " +
                                   ctx.conn->endpoint().text + " (nothing was published or subscribed there)" + others);
}

}  // namespace

std::string acl_rules(std::string_view prefix) {
  // Every command crier sends, directly or from its scripts (context.cpp): checked by running
  // the conformance suite as a user with these rules alone.
  std::string rules = "~";  // appended: g++ 12 warns on `"~" + std::string&&` (-Wrestrict, a false positive)
  rules += prefix;
  rules +=
      ":* -@all +ping +select +info +scan +exists +get +set +incr +del +hget +hset +hdel +hlen +hmget +sadd "
      "+sismember +smembers +xadd +xack +xclaim +xautoclaim +xdel +xgroup +xinfo +xlen +xpending +xrange "
      "+xrevrange +xreadgroup +evalsha +script|load +wait +publish &";
  rules += prefix;
  rules += ":*";
  return rules;
}

std::shared_ptr<Transport> connect(const Options& options) {
  return std::make_shared<RedisTransport>(open_context(options));
}

void register_scheme() {
  auto opener = [](const std::string& target, const OpenOptions&) -> std::shared_ptr<Transport> {
    Options o;
    o.timeout = std::chrono::seconds(5);
    o.url = target;
    o.allow_eviction = true;  // the tools show such a bus as it is; its programs refuse it
    if (const auto q = target.find('?'); q != std::string::npos) {
      const std::string query = target.substr(q + 1);
      for (std::size_t from = 0; from < query.size();) {
        const auto amp = std::min(query.find('&', from), query.size());
        if (query.compare(from, 7, "prefix=") == 0) o.prefix = query.substr(from + 7, amp - from - 7);
        from = amp + 1;
      }
    }
    auto ctx = open_context(o);
    require_bus(*ctx);
    return std::make_shared<RedisTransport>(std::move(ctx));
  };
  register_transport("redis", opener);
  register_transport("unix", opener);
}

}  // namespace crier::redis
