// Links to one Redis server over hiredis 0.14 (blocking contexts, RESP2) and what crier does
// over them: pipelined commands from a pool of links, retried across a lost connection and a
// server still LOADING its data, with back-off, until the options' timeout; Lua scripts by
// their SHA, loaded again when the server forgot them (a restart).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <crier/error.hpp>
#include <crier/redis.hpp>
#include <crier/transport.hpp>

#include "common/health_listeners.hpp"
#include "common/mutex.hpp"

struct redisContext;

namespace crier::redis {

using crier::detail::CondVar;
using crier::detail::Mutex;
using crier::detail::MutexLock;

/// One reply, copied out of hiredis.
struct Reply {
  enum class Kind { nil, string, status, error, integer, array };
  Kind kind = Kind::nil;
  std::string str{};  ///< string, status and error replies
  long long integer = 0;
  std::vector<Reply> elements{};

  bool is_nil() const noexcept { return kind == Kind::nil; }
  bool is_error() const noexcept { return kind == Kind::error; }
  /// An error reply whose code (its first word) is `code`: "NOGROUP", "LOADING", ...
  bool is_error(std::string_view code) const noexcept;
  /// The integer of an integer reply, or of a string reply holding one; 0 otherwise.
  long long as_integer() const noexcept;
};

/// For a command the server refuses in its state (out of memory, a replica, a disk it cannot
/// write, too few replicas, too many clients), a parenthesis saying what it means and what to
/// do (starting with a space); "" for any other reply.
std::string refusal_hint(const Reply& reply);

/// A command and its arguments, each binary-safe, kept as Redis reads them (RESP2 bulk
/// strings): built in one buffer and sent without a copy per argument.
class Command {
 public:
  Command() = default;
  Command(std::initializer_list<std::string_view> args) { append(args); }
  void push_back(std::string_view arg);
  void append(std::initializer_list<std::string_view> args) { append(args.begin(), args.end()); }
  template <typename It>
  void append(It first, It last) {
    for (; first != last; ++first) push_back(*first);
  }
  /// Room for `bytes` of arguments (each takes its size and about 10 bytes more).
  void reserve(std::size_t bytes) { body_.reserve(bytes); }
  /// How many arguments, the command's name included.
  std::size_t size() const noexcept { return argc_; }
  /// Appends the command, as it goes on the wire, to `out`.
  void encode(std::string& out) const;

 private:
  std::size_t argc_ = 0;
  std::string body_;  // each argument as $<size>\r\n<bytes>\r\n
};

/// Where the server is, from Options::url.
struct Endpoint {
  std::string host{};  ///< empty for a unix socket
  int port = 6379;
  std::string socket{};
  int db = 0;
  std::string user{}, password{};
  std::string text{};  ///< for messages: host:port or the socket's path (never the password)
};
/// Parses `redis://[[user]:password@]host[:port][/db]` or `unix:///path[?db=N]`; throws
/// Error(Errc::invalid_argument) saying what is wrong.
Endpoint parse_url(std::string_view url);

/// A link lost, or never made: I/O failed. The command may or may not have reached Redis.
class LinkError : public Error {
 public:
  explicit LinkError(const std::string& what) : Error(Errc::transport_error, what) {}
};

/// The server closed every new link the commands were sent on, as soon as they were sent
/// (kLostOnEveryTry times running): something in them, not the server's health (an answer
/// larger than the server's client-output-buffer-limit, a proxy that drops it). Sending
/// them again would only repeat it.
class LostOnEveryTry : public Error {
 public:
  explicit LostOnEveryTry(const std::string& what) : Error(Errc::transport_error, what) {}
};

/// The link was lost after some commands of a pipeline were answered: their replies. What
/// came after them may or may not have reached Redis.
class Interrupted : public LinkError {
 public:
  Interrupted(const std::string& what, std::vector<Reply> answered) : LinkError(what), answered(std::move(answered)) {}
  std::vector<Reply> answered;
};

/// One connection, authenticated and on its database; used by one thread at a time.
class Link {
 public:
  /// Connects; throws LinkError when the server cannot be reached, Error when it refuses.
  Link(const Endpoint& at, std::chrono::milliseconds timeout);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;
  /// Sends every command, then reads every reply, in order. Throws LinkError, Interrupted
  /// once a reply was read.
  std::vector<Reply> run(std::span<const Command> commands);
  /// run() in two halves, for a caller that works while Redis answers: send() writes the
  /// commands out without waiting; receive() reads the next `n` replies. Throw as run().
  void send(std::span<const Command> commands);
  std::vector<Reply> receive(std::size_t n);
  /// How long a read waits before the link counts as lost (a blocking read waits longer).
  void set_timeout(std::chrono::milliseconds timeout);
  /// Tells links apart: each link made has a number of its own (an address may be reused).
  std::uint64_t serial() const noexcept { return serial_; }

 private:
  // Writes to the server itself, not through hiredis: 0.14 writes with write(2), which on a
  // link whose server is gone raises SIGPIPE, and a process that left SIGPIPE at its default
  // ends there (a run of the restart test did). send(2) with MSG_NOSIGNAL fails with EPIPE
  // instead: a lost link like any other. hiredis reads the replies; its output buffer stays
  // empty. A failed write marks the context lost, as hiredis marks its own.
  void write(std::string_view bytes);
  // Why the link is lost, in words: hiredis says a read that timed out as errno's text
  // ("Resource temporarily unavailable"), which is said as the wait it was.
  std::string lost_why() const;

  redisContext* c_ = nullptr;
  std::uint64_t serial_;
  std::string where_;
  std::chrono::milliseconds timeout_;  // of a read
};

/// A Lua script, run by its SHA1 (EVALSHA) and loaded again when the server lacks it.
struct Script {
  std::string source{};
  std::string sha{};  ///< computed once, by SCRIPT LOAD
};

class Connection {
 public:
  /// Connects one link (waiting up to options.timeout for the server).
  explicit Connection(const Options& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const Options& options() const noexcept { return options_; }
  const Endpoint& endpoint() const noexcept { return endpoint_; }

  /// Runs the commands as one pipeline on a pooled link. A lost link, or a server LOADING,
  /// runs them again on a new link, with back-off, until the timeout: the commands must be
  /// safe to repeat. Error replies are returned, not thrown, but for LOADING (retried) and
  /// NOSCRIPT (the script loaded, the command sent again). Throws Error(Errc::transport_error)
  /// "<what>: ..." when the server stays out of reach.
  std::vector<Reply> pipeline(std::span<const Command> commands, std::string_view what);
  /// As pipeline(), but a link lost while the commands were out is not sent again: it throws
  /// Interrupted with the replies that came (the next call reconnects). For commands that
  /// are not safe to repeat blindly: the caller finds out what the lost ones did.
  /// `read_timeout`: how long the server may take to answer beyond `timeout` (a WAIT's).
  std::vector<Reply> pipeline_once(std::span<const Command> commands, std::string_view what,
                                   std::chrono::milliseconds read_timeout = std::chrono::milliseconds(0));
  /// One command; an error reply throws Error(Errc::transport_error) "<what>: <reply>".
  Reply command(const Command& c, std::string_view what);
  /// EVALSHA of `script` with its keys and arguments, as a command for pipeline().
  Command eval(const Script& script, std::vector<std::string> keys, std::vector<std::string> args);
  /// Loads `script` (its sha filled in); call once before eval().
  void load(Script& script);

  /// A link of its own for a caller that blocks on it (XREADGROUP BLOCK), reconnected with
  /// back-off as pipeline() does. Throws Error when the server stays out of reach.
  std::unique_ptr<Link> dedicated(std::string_view what);
  /// Runs on `link`, replacing it (with back-off) when lost, as pipeline() does; throws
  /// LostOnEveryTry when every new link is lost with them too.
  /// `read_timeout`: how long the server may take on purpose (XREADGROUP BLOCK) beyond the
  /// options' timeout.
  std::vector<Reply> run_on(std::unique_ptr<Link>& link, std::span<const Command> commands, std::string_view what,
                            std::chrono::milliseconds read_timeout, bool resend = true);

  /// Waits for room for `n` more publishes in flight (Options::max_in_flight), then takes it.
  void begin_publish(std::size_t n);
  void end_publish(std::size_t n);

  TransportHealth health() const;
  std::shared_ptr<void> watch(Transport::HealthListener listener);
  /// Tells the listeners of something they should know that is not a change of the link
  /// (a consumer group made again after the server lost it).
  void notice(const std::string& what);

 private:
  std::unique_ptr<Link> take_link();
  std::unique_ptr<Link> take_link_or_reconnect(std::string_view what);
  void give_back(std::unique_ptr<Link> link);
  // A new link after one failed (`why`), waiting with back-off until `deadline`; the idle
  // links are dropped. Tells the listeners of a loss when a new link cannot be had at once,
  // and of the return. `what` names the call that needs it (empty: the first link, made by
  // connect).
  std::unique_ptr<Link> reconnect(std::chrono::steady_clock::time_point deadline, std::string_view what,
                                  const std::string& why);
  // The links idle in the pool are closed and forgotten.
  void drop_idle_links();
  // The server cannot be reached: the idle links are dropped, and the listeners told.
  void lost(const std::string& why);
  void link_state(bool up, const std::string& what);
  std::vector<Reply> reload_scripts(std::unique_ptr<Link>& link, std::span<const Command> commands,
                                    std::vector<Reply> replies);

  Options options_;
  Endpoint endpoint_;

  Mutex pool_mu_;
  std::vector<std::unique_ptr<Link>> idle_ CRIER_GUARDED_BY(pool_mu_);

  Mutex scripts_mu_;
  std::map<std::string, std::string> scripts_ CRIER_GUARDED_BY(scripts_mu_);  // sha -> source

  Mutex flight_mu_;
  CondVar flight_cv_;
  std::size_t in_flight_ CRIER_GUARDED_BY(flight_mu_) = 0;

  crier::detail::HealthListeners listeners_;

  std::atomic<bool> connected_{true};
  std::atomic<std::uint64_t> disconnects_{0}, reconnects_{0}, retries_{0};
};

}  // namespace crier::redis
