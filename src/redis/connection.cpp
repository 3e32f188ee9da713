#include "redis/connection.hpp"

#include <hiredis/hiredis.h>
#include <sys/socket.h>
#include <crier/open.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <thread>

namespace crier::redis {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{25};
constexpr milliseconds kMaxBackoff{1000};
// How many new links in a row may be lost with the same commands before they are given up on.
constexpr int kLostOnEveryTry = 3;

// A command the server's ACL user may not run, or a key it may not touch, directly or from
// one of crier's scripts (which Redis says as an ERR).
bool refused_by_acl(const Reply& r) {
  return r.is_error("NOPERM") ||
         (r.is_error("ERR") && r.str.find("The user executing the script can't") != std::string::npos);
}

std::uint64_t next_link_serial() {
  static std::atomic<std::uint64_t> n{0};
  return ++n;
}

timeval timeval_of(milliseconds d) {
  return timeval{static_cast<time_t>(d.count() / 1000), static_cast<suseconds_t>((d.count() % 1000) * 1000)};
}

// hiredis builds replies through these: straight into a Reply tree, without the redisReply
// tree hiredis would allocate node by node and crier would copy. Only the root is allocated
// (and freed by hiredis on a protocol error); an element lives in its parent's vector, sized
// by createArray before any element is read. Nothing may throw through hiredis's C: out of
// memory (or an array a broken server says is huge) is nullptr, which hiredis reports as an
// error of the link.
Reply* reply_slot(const redisReadTask* task) {
  if (task->parent == nullptr) return new Reply();
  return &static_cast<Reply*>(task->parent->obj)->elements[static_cast<std::size_t>(task->idx)];
}

template <typename Fill>
void* create(const redisReadTask* task, Fill fill) noexcept {
  Reply* r = nullptr;
  try {
    r = reply_slot(task);
    fill(*r);
    return r;
  } catch (...) {
    if (task->parent == nullptr) delete r;  // a root this call allocated (nullptr if new threw)
    return nullptr;
  }
}

void* create_string(const redisReadTask* task, char* str, std::size_t len) {
  return create(task, [&](Reply& r) {
    r.kind = task->type == REDIS_REPLY_ERROR    ? Reply::Kind::error
             : task->type == REDIS_REPLY_STATUS ? Reply::Kind::status
                                                : Reply::Kind::string;
    r.str.assign(str, len);
  });
}

void* create_array(const redisReadTask* task, int elements) {
  return create(task, [&](Reply& r) {
    r.kind = Reply::Kind::array;
    r.elements.resize(static_cast<std::size_t>(std::max(elements, 0)));
  });
}

void* create_integer(const redisReadTask* task, long long value) {
  return create(task, [&](Reply& r) {
    r.kind = Reply::Kind::integer;
    r.integer = value;
  });
}

void* create_nil(const redisReadTask* task) {
  return create(task, [](Reply&) {});
}

void free_reply(void* root) { delete static_cast<Reply*>(root); }

constexpr redisReplyObjectFunctions kReplyFunctions = {create_string, create_array, create_integer, create_nil,
                                                       free_reply};

int parse_int(std::string_view text, std::string_view what, std::string_view url) {
  int n = 0;
  if (text.empty() || std::from_chars(text.data(), text.data() + text.size(), n).ptr != text.data() + text.size() ||
      n < 0)
    throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) + "': " + std::string(what) + " '" +
                                            std::string(text) + "' is not a number");
  return n;
}

int parse_port(std::string_view text, std::string_view url) {
  const int port = parse_int(text, "port", url);
  if (port < 1 || port > 65535)
    throw Error(Errc::invalid_argument,
                "redis: '" + redacted_target(url) + "': port " + std::string(text) + " is not 1 to 65535");
  return port;
}

}  // namespace

bool Reply::is_error(std::string_view code) const noexcept {
  return kind == Kind::error && str.size() >= code.size() && str.compare(0, code.size(), code) == 0 &&
         (str.size() == code.size() || str[code.size()] == ' ');
}

long long Reply::as_integer() const noexcept {
  if (kind == Kind::integer) return integer;
  long long n = 0;
  if (kind == Kind::string) (void)std::from_chars(str.data(), str.data() + str.size(), n);
  return n;
}

std::string refusal_hint(const Reply& reply) {
  if (reply.is_error("OOM"))
    return " (the server has reached its maxmemory and refuses writes until memory is freed: raise maxmemory, "
           "cap the event streams with Options::max_len, or purge dead letters)";
  if (reply.is_error("READONLY")) return " (this server is a read-only replica: give crier its primary's address)";
  if (reply.is_error("MISCONF"))
    return " (the server cannot write its data to disk, a full or failing disk, and refuses every write until it "
           "can: free space where it keeps its files)";
  if (reply.is_error("ERR") && reply.str.starts_with("ERR max number of clients reached"))
    return " (the server's maxclients: each subscriber of a bus holds a connection of its own, its publishes "
           "and the tools take more; raise maxclients)";
  if (reply.is_error("NOREPLICAS"))
    return " (fewer replicas are in reach than the server's min-replicas-to-write, and it refuses writes until "
           "they are)";
  return "";
}

Endpoint parse_url(std::string_view url) {
  Endpoint e;
  const auto sep = url.find("://");
  if (sep == std::string_view::npos)
    throw Error(Errc::invalid_argument,
                "redis: '" + redacted_target(url) + "' is not redis://HOST[:PORT] nor unix:///PATH");
  const std::string_view scheme = url.substr(0, sep);
  std::string_view rest = url.substr(sep + 3);
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (scheme == "rediss")
    throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) +
                                            "': TLS is not available (Debian 12's hiredis 0.14 has no TLS); use a "
                                            "tunnel (stunnel, spiped) or a unix socket");
  if (scheme == "unix") {
    if (rest.empty() || rest.front() != '/')
      throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) + "': a unix socket URL is unix:///PATH");
    e.socket = std::string(rest);
    e.text = e.socket;
  } else if (scheme == "redis") {
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
      const std::string_view cred = rest.substr(0, at);
      rest = rest.substr(at + 1);
      if (const auto colon = cred.find(':'); colon != std::string_view::npos) {
        e.user = std::string(cred.substr(0, colon));
        e.password = std::string(cred.substr(colon + 1));
      } else {
        e.password = std::string(cred);
      }
    }
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
      if (slash + 1 < rest.size()) e.db = parse_int(rest.substr(slash + 1), "database", url);
      rest = rest.substr(0, slash);
    }
    std::string_view host = rest;
    if (rest.starts_with('[')) {  // an IPv6 address: [::1]:6379
      const auto close = rest.find(']');
      if (close == std::string_view::npos)
        throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) + "': an IPv6 address lacks its ']'");
      host = rest.substr(1, close - 1);
      rest = rest.substr(close + 1);
      if (!rest.empty() && rest.front() != ':')
        throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) + "': ']' is not followed by :PORT");
      if (!rest.empty()) e.port = parse_port(rest.substr(1), url);
    } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
      e.port = parse_port(rest.substr(colon + 1), url);
      host = rest.substr(0, colon);
    }
    if (host.empty()) throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) + "' names no host");
    e.host = std::string(host);
    e.text = (e.host.find(':') == std::string::npos ? e.host : "[" + e.host + "]") + ":" + std::to_string(e.port);
  } else {
    throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) + "': the scheme is redis:// or unix://");
  }
  for (std::size_t from = 0; from < query.size();) {
    const auto amp = std::min(query.find('&', from), query.size());
    const std::string_view pair = query.substr(from, amp - from);
    if (pair.rfind("db=", 0) == 0)
      e.db = parse_int(pair.substr(3), "database", url);
    else if (!pair.empty() && pair.rfind("prefix=", 0) != 0)
      throw Error(Errc::invalid_argument, "redis: '" + redacted_target(url) + "': unknown query '" + std::string(pair) +
                                              "' (db=N and prefix=NAME are known)");
    from = amp + 1;
  }
  return e;
}

// --- Link ----------------------------------------------------------------------------------

Link::Link(const Endpoint& at, milliseconds timeout) : serial_(next_link_serial()), where_(at.text), timeout_(timeout) {
  const timeval tv = timeval_of(timeout);
  c_ = at.socket.empty() ? redisConnectWithTimeout(at.host.c_str(), at.port, tv)
                         : redisConnectUnixWithTimeout(at.socket.c_str(), tv);
  if (c_ == nullptr) throw LinkError("redis: out of memory connecting to " + where_);
  if (c_->err) {
    const std::string why = c_->errstr;
    redisFree(c_);
    c_ = nullptr;
    throw LinkError("redis: cannot connect to " + where_ + ": " + why);
  }
  c_->reader->fn = const_cast<redisReplyObjectFunctions*>(&kReplyFunctions);
  redisSetTimeout(c_, tv);
  // TCP only: on a unix socket hiredis 0.14 fails it and marks the link broken.
  if (at.socket.empty()) (void)redisEnableKeepAlive(c_);
  std::vector<Command> hello;
  if (!at.password.empty()) {
    if (at.user.empty())
      hello.push_back({"AUTH", at.password});
    else
      hello.push_back({"AUTH", at.user, at.password});
  }
  if (at.db != 0) hello.push_back({"SELECT", std::to_string(at.db)});
  // A link counts as made once the server answered: a server being killed still completes
  // TCP handshakes for a moment, and the link would be reported regained.
  if (hello.empty()) hello.push_back({"PING"});
  std::vector<Reply> replies;
  try {
    replies = run(hello);
  } catch (...) {
    redisFree(c_);
    c_ = nullptr;
    throw;
  }
  for (const Reply& r : replies) {
    if (!r.is_error()) continue;
    redisFree(c_);
    c_ = nullptr;
    if (r.is_error("LOADING")) throw LinkError("redis: " + where_ + " is loading its data: " + r.str);
    throw Error(Errc::transport_error,
                "redis: " + where_ + " refused " +
                    (r.str.find("WRONGPASS") != std::string::npos || r.str.find("NOAUTH") != std::string::npos
                         ? std::string("the credentials")
                         : std::string("the connection")) +
                    ": " + r.str + refusal_hint(r));
  }
}

Link::~Link() {
  if (c_ != nullptr) redisFree(c_);
}

void Link::set_timeout(milliseconds timeout) {
  redisSetTimeout(c_, timeval_of(timeout));
  timeout_ = timeout;
}

std::string Link::lost_why() const {
  if (c_->err == 0) return "no reply";
  if (c_->err == REDIS_ERR_IO && std::strcmp(c_->errstr, std::strerror(EAGAIN)) == 0)
    return "no answer within " + std::to_string(timeout_.count()) + " ms (a server that is stuck, or not Redis?)";
  return c_->errstr;
}

std::vector<Reply> Link::run(std::span<const Command> commands) {
  send(commands);
  return receive(commands.size());
}

namespace {

void append_number(std::string& out, char tag, std::size_t n) {
  char digits[24];
  out += tag;
  out.append(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
  out += "\r\n";
}

// Commands are written out as they are encoded, a chunk at a time: Redis runs the first
// while the next are encoded.
constexpr std::size_t kWriteChunk = 16 * 1024;

}  // namespace

void Command::push_back(std::string_view arg) {
  append_number(body_, '$', arg.size());
  body_ += arg;
  body_ += "\r\n";
  ++argc_;
}

void Command::encode(std::string& out) const {
  append_number(out, '*', argc_);
  out += body_;
}

void Link::send(std::span<const Command> commands) {
  if (c_->err) throw LinkError("redis: link to " + where_ + " lost: " + lost_why());
  std::string out;
  out.reserve(kWriteChunk + 1024);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    commands[i].encode(out);
    if (out.size() < kWriteChunk && i + 1 < commands.size()) continue;
    write(out);
    out.clear();
  }
}

void Link::write(std::string_view bytes) {
  while (!bytes.empty()) {  // a blocking socket: each call writes what the kernel takes
    const ssize_t n = ::send(c_->fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    // Marked on the context as hiredis marks a failed write of its own: lost for good.
    const char* why = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out writing" : std::strerror(errno);
    c_->err = REDIS_ERR_IO;
    std::snprintf(c_->errstr, sizeof c_->errstr, "%s", why);
    throw LinkError("redis: link to " + where_ + " lost: " + c_->errstr);
  }
}

std::vector<Reply> Link::receive(std::size_t n) {
  std::vector<Reply> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    void* raw = nullptr;
    if (redisGetReply(c_, &raw) != REDIS_OK || raw == nullptr) {
      const std::string why = "redis: link to " + where_ + " lost: " + lost_why();
      if (out.empty()) throw LinkError(why);
      throw Interrupted(why, std::move(out));
    }
    std::unique_ptr<Reply> reply(static_cast<Reply*>(raw));
    out.push_back(std::move(*reply));
  }
  return out;
}

// --- Connection ----------------------------------------------------------------------------

Connection::Connection(const Options& options) : options_(options), endpoint_(parse_url(options.url)) {
  if (!options_.user.empty()) endpoint_.user = options_.user;
  if (!options_.password.empty()) endpoint_.password = options_.password;
  // The first link proves the server is there and takes the credentials.
  give_back(reconnect(Clock::now() + options_.timeout, "", ""));
}

Connection::~Connection() = default;

std::unique_ptr<Link> Connection::take_link() {
  {
    MutexLock lock(pool_mu_);
    if (!idle_.empty()) {
      auto link = std::move(idle_.back());
      idle_.pop_back();
      return link;
    }
  }
  auto link = std::make_unique<Link>(endpoint_, options_.timeout);
  link_state(true, "redis: connected again, to " + endpoint_.text);  // said only after a loss
  return link;
}

void Connection::give_back(std::unique_ptr<Link> link) {
  if (!link) return;
  MutexLock lock(pool_mu_);
  if (idle_.size() < 16) idle_.push_back(std::move(link));
}

std::unique_ptr<Link> Connection::reconnect(Clock::time_point deadline, std::string_view what, const std::string& why) {
  // The links idle in the pool went the way of the one lost, most likely: closed by a server
  // that was restarted, or that closes idle clients (`timeout`), or by CLIENT KILL.
  drop_idle_links();
  milliseconds backoff = kFirstBackoff;
  std::string last = why;
  for (bool first = true;; first = false) {
    try {
      auto link = std::make_unique<Link>(endpoint_, options_.timeout);
      link_state(true, "redis: connected again, to " + endpoint_.text);  // said only after a loss
      return link;
    } catch (const LinkError& e) {
      last = e.message();
    }
    // Lost is said once a new link cannot be had: a link the server closed while it stays up
    // (an idle timeout) is replaced without a word.
    if (first && !why.empty()) lost(why);
    const auto now = Clock::now();
    if (now >= deadline) {
      // `last` names the server and begins "redis: ", as `what` does.
      std::string_view said = last;
      if (!what.empty() && said.starts_with("redis: ")) said.remove_prefix(7);
      throw Error(Errc::transport_error, (what.empty() ? "" : std::string(what) + ": ") + std::string(said) +
                                             " (tried for " + std::to_string(options_.timeout.count()) + " ms)");
    }
    // Back-off between tries to reach a server, the last at the deadline (the error says how
    // long it tried).
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

void Connection::drop_idle_links() {
  MutexLock lock(pool_mu_);
  idle_.clear();
}

void Connection::lost(const std::string& why) {
  drop_idle_links();
  // `why` is a LinkError's message, which names the link and what became of it.
  link_state(false,
             why + "; reconnecting (calls wait up to " + std::to_string(options_.timeout.count()) + " ms meanwhile)");
}

void Connection::link_state(bool up, const std::string& what) {
  if (connected_.exchange(up) == up) return;
  (up ? reconnects_ : disconnects_).fetch_add(1, std::memory_order_relaxed);
  listeners_.notify(up, what);
}

std::vector<Reply> Connection::pipeline(std::span<const Command> commands, std::string_view what) {
  auto link = take_link_or_reconnect(what);
  auto replies = run_on(link, commands, what, milliseconds(0));
  give_back(std::move(link));
  return replies;
}

std::unique_ptr<Link> Connection::take_link_or_reconnect(std::string_view what) {
  try {
    return take_link();
  } catch (const LinkError& e) {
    retries_.fetch_add(1, std::memory_order_relaxed);
    return reconnect(Clock::now() + options_.timeout, what, e.message());
  }
}

std::vector<Reply> Connection::pipeline_once(std::span<const Command> commands, std::string_view what,
                                             milliseconds read_timeout) {
  auto link = take_link_or_reconnect(what);
  auto replies = run_on(link, commands, what, read_timeout, /*resend=*/false);
  give_back(std::move(link));
  return replies;
}

std::vector<Reply> Connection::run_on(std::unique_ptr<Link>& link, std::span<const Command> commands,
                                      std::string_view what, milliseconds read_timeout, bool resend) {
  const auto deadline = Clock::now() + options_.timeout + read_timeout;
  milliseconds backoff = kFirstBackoff;
  bool fresh = false;  // link was made for these commands
  int fresh_lost = 0;  // ... and lost with them, that many times running
  for (;;) {
    std::vector<Reply> replies;
    try {
      if (!link) {
        link = reconnect(deadline, what, "");
        fresh = true;
      }
      link->set_timeout(read_timeout + options_.timeout);  // past it, the server counts as gone
      replies = link->run(commands);
    } catch (const LinkError& e) {
      link.reset();
      retries_.fetch_add(1, std::memory_order_relaxed);
      if (!resend) {  // for the caller to see what was stored; lost is said if no new link can be had
        drop_idle_links();
        throw;
      }
      // A server that closes every link these are sent on, while it takes new ones at once,
      // would be sent them again and again (thousands of times a second) without a word.
      if (fresh && ++fresh_lost >= kLostOnEveryTry)
        throw LostOnEveryTry(std::string(what) + ": the server closed the connection each time this was sent (" +
                             std::to_string(fresh_lost) + " new connections running; the last: " + e.message() +
                             "): an answer larger than its client-output-buffer-limit for normal clients, or a "
                             "proxy that drops it?");
      if (fresh) {  // back-off before the next try (the last at the deadline)
        std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - Clock::now()));
        backoff = std::min(backoff * 2, kMaxBackoff);
      }
      link = reconnect(deadline, what, e.message());
      fresh = true;
      continue;
    }
    const bool loading =
        std::any_of(replies.begin(), replies.end(), [](const Reply& r) { return r.is_error("LOADING"); });
    if (loading) {  // a restarted server reading its data: it ran none of them
      if (Clock::now() + backoff > deadline)
        throw Error(Errc::transport_error, std::string(what) + ": redis at " + endpoint_.text +
                                               " still loading its data after " +
                                               std::to_string(options_.timeout.count()) + " ms");
      retries_.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(backoff);  // back-off while the server loads
      backoff = std::min(backoff * 2, kMaxBackoff);
      continue;
    }
    if (std::any_of(replies.begin(), replies.end(), [](const Reply& r) { return r.is_error("NOSCRIPT"); }))
      replies = reload_scripts(link, commands, std::move(replies));
    for (Reply& r : replies)
      if (refused_by_acl(r))
        r.str += " (the server's ACL user for this connection may not: a bus's user needs the rules '" +
                 acl_rules(options_.prefix) + "')";
    return replies;
  }
}

std::vector<Reply> Connection::reload_scripts(std::unique_ptr<Link>& link, std::span<const Command> commands,
                                              std::vector<Reply> replies) {
  std::vector<Command> load;
  {
    MutexLock lock(scripts_mu_);
    for (const auto& [sha, source] : scripts_) load.push_back({"SCRIPT", "LOAD", source});
  }
  std::vector<Command> again;
  std::vector<std::size_t> at;
  for (std::size_t i = 0; i < replies.size(); ++i)
    if (replies[i].is_error("NOSCRIPT")) {
      again.push_back(commands[i]);
      at.push_back(i);
    }
  (void)link->run(load);  // errors here show in the commands' replies below
  auto second = link->run(again);
  for (std::size_t i = 0; i < at.size(); ++i) replies[at[i]] = std::move(second[i]);
  return replies;
}

Reply Connection::command(const Command& c, std::string_view what) {
  auto r = pipeline(std::span<const Command>(&c, 1), what);
  if (r.front().is_error()) throw Error(Errc::transport_error, std::string(what) + ": " + r.front().str);
  return std::move(r.front());
}

void Connection::load(Script& script) {
  const Reply sha = command({"SCRIPT", "LOAD", script.source}, "redis: loading a script");
  script.sha = sha.str;
  MutexLock lock(scripts_mu_);
  scripts_[script.sha] = script.source;
}

Command Connection::eval(const Script& script, std::vector<std::string> keys, std::vector<std::string> args) {
  Command c = {"EVALSHA", script.sha, std::to_string(keys.size())};
  c.append(keys.begin(), keys.end());
  c.append(args.begin(), args.end());
  return c;
}

std::unique_ptr<Link> Connection::dedicated(std::string_view what) { return take_link_or_reconnect(what); }

void Connection::begin_publish(std::size_t n) {
  n = std::min(n, options_.max_in_flight);
  MutexLock lock(flight_mu_);
  while (in_flight_ + n > options_.max_in_flight) flight_cv_.wait(flight_mu_);
  in_flight_ += n;
}

void Connection::end_publish(std::size_t n) {
  n = std::min(n, options_.max_in_flight);
  {
    MutexLock lock(flight_mu_);
    in_flight_ -= n;
  }
  flight_cv_.notify_all();
}

TransportHealth Connection::health() const {
  return {connected_.load(), disconnects_.load(), reconnects_.load(), retries_.load(), endpoint_.text};
}

std::shared_ptr<void> Connection::watch(Transport::HealthListener listener) {
  return listeners_.add(std::move(listener));
}

void Connection::notice(const std::string& what) { listeners_.notify(connected_.load(), what); }

}  // namespace crier::redis
