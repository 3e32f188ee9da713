// One cnats connection and what crier does over it: JetStream API requests, and pipelined
// publishes that wait for the stream's acknowledgements. JetStream is spoken as its wire
// API (JSON requests on `$JS.API.>`, pull requests, ack subjects) rather than through
// cnats's js_ calls, around cnats 3.4.1's pull-subscription defects (Fetch ignoring its
// timeout, nats.c#631; a heap overflow in _fetch, #749; a crash on a message for a
// destroyed subscription, #637) and so that consumers are created explicitly and never
// deleted by an unsubscribe.
#pragma once

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <crier/error.hpp>
#include <crier/nats.hpp>
#include <crier/transport.hpp>
#include <nlohmann/json.hpp>

#include "common/health_listeners.hpp"
#include "common/mutex.hpp"
#include "nats/binding.hpp"
#include "nats/outgoing.hpp"
#include "nats/publish_answer.hpp"

namespace crier::nats {

using crier::detail::CondVar;
using crier::detail::Mutex;
using crier::detail::MutexLock;

// Waits between tries that failed at once (no responders, no connection, a stream that
// cannot be placed yet): doubling from the first to the last.
inline constexpr std::chrono::milliseconds kFirstBackoff{20};
inline constexpr std::chrono::milliseconds kMaxBackoff{1000};

// JetStream API error codes crier acts on (nats-server's errors.json).
inline constexpr int kNoSuitablePeers = 10005;
inline constexpr int kConsumerNotFound = 10014;
inline constexpr int kNoMessageFound = 10037;
inline constexpr int kStreamNotFound = 10059;
inline constexpr int kSubjectsOverlap = 10065;
inline constexpr int kWrongLastSequence = 10071;

/// An error answer of the JetStream API.
class ApiError : public Error {
 public:
  ApiError(int err_code, const std::string& what) : Error(Errc::transport_error, what), err_code(err_code) {}
  int err_code;
};

/// The message's headers (none for a message without), the first value of each name, as
/// views of its own storage: valid while it lives unchanged. Read in place (nats/header_block.hpp),
/// else (a status or folded line, an unknown cnats) through cnats.
HeaderViews header_views_of(natsMsg* m);
/// The same into `out` (cleared first), whose storage a caller that reads many reuses.
void header_views_of(natsMsg* m, HeaderViews& out);
/// A status message's code (404, 408, 409, 503...), or 0 for a message that carries data.
int status_of(natsMsg* m);
/// The message's payload.
std::string_view payload_of(natsMsg* m);
/// Throws Error(Errc::transport_error) "<what>: <cnats's text>" unless s is NATS_OK.
void check(natsStatus s, std::string_view what);

class Connection {
 public:
  /// How many requests ask_many (direct_get_many, delete_messages) sends before reading answers.
  static constexpr std::size_t kAtOnce = 256;
  /// Connects; waits up to options.publish_timeout for a first server.
  explicit Connection(const Options& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  natsConnection* raw() const noexcept { return nc_; }
  const Options& options() const noexcept { return options_; }

  /// `<the JetStream API's prefix><rest>`: `$JS.API.<rest>`, or `$JS.<domain>.API.<rest>` in
  /// the domain the options name.
  std::string api_subject(std::string_view rest) const { return api_prefix_ + std::string(rest); }

  /// A JetStream API request (`$JS.API.<api>`, see api_subject), retried through timeouts, no responders and a
  /// lost connection for up to the publish timeout. Returns the answer; an error answer
  /// throws ApiError naming `what`.
  nlohmann::json api(const std::string& api, const nlohmann::json& body, std::string_view what);

  /// Stores the messages in `stream`, whose subjects they are on: pipelined (at most
  /// max_in_flight unacknowledged over all callers), each retried with its Nats-Msg-Id until
  /// acknowledged or publish_timeout. Returns each one's stream sequence. Throws
  /// Error(Errc::transport_error) naming the first failure; messages before it may be stored
  /// (their ids make a retry harmless). A stream that does not exist (asked when nothing
  /// answers) throws ApiError(kStreamNotFound) at once.
  std::vector<std::uint64_t> publish(const std::string& stream, const std::vector<Outgoing>& messages,
                                     std::string_view what);

  /// A message read directly from a stream (`$JS.API.DIRECT.GET`, which the streams allow):
  /// with `last_by_subj`, the newest of a subject; with `seq` (and `next_by_subj`), the
  /// first at or after it. Nullopt when there is none. A stream that does not exist throws
  /// ApiError(kStreamNotFound).
  struct Stored {
    Msg message{};  ///< the server's answer, which `headers` view
    std::uint64_t seq = 0;
    std::string subject{};
    HeaderViews headers{};
    std::string payload{};
    std::string time{};  ///< when the stream stored it, RFC 3339
  };
  std::optional<Stored> direct_get(const std::string& stream, const nlohmann::json& request, std::string_view what);
  /// Each request's answer, as direct_get gives it, in their order: sent kAtOnce at a time
  /// and read as they come (a look over many events is a round trip a window, not one each);
  /// from the first that is not answered within a try on, asked one by one through direct_get.
  std::vector<std::optional<Stored>> direct_get_many(const std::string& stream,
                                                     const std::vector<nlohmann::json>& requests,
                                                     std::string_view what);

  /// Deletes these messages of `stream`, kAtOnce requests at a time; one not deleted at once is
  /// asked again through api(), whose ApiError says why (`what` and its sequence name it).
  void delete_messages(const std::string& stream, const std::vector<std::uint64_t>& seqs, std::string_view what);

  /// How many messages of `stream` are on subjects matching `filter` (wildcards allowed).
  std::uint64_t subject_count(const std::string& stream, const std::string& filter);

  /// Sends a message without waiting for an answer (acks, pull requests). It is buffered:
  /// cnats's flusher writes it within a millisecond, flush() at once.
  /// Every ack goes through here: nothing is allocated unless it fails.
  void send(const char* subject, std::string_view data, const char* reply = nullptr);
  void send(const std::string& subject, std::string_view data, const char* reply = nullptr) {
    send(subject.c_str(), data, reply);
  }
  /// Writes what is buffered now, for a caller that waits for an answer to it.
  void flush() noexcept;
  /// Throws Error(Errc::transport_error) when the server's user for this connection may not
  /// publish to `$JS.ACK.>` (acknowledgements of `stream`'s consumers): the server would drop
  /// every acknowledgement, refusing each in its own log only, and every event would come back
  /// after AckWait for ever. Asked with a message no consumer takes, until it is known.
  void require_ack_permission(const std::string& stream);
  /// Frees `sub`, which the caller has unsubscribed, once cnats's reader thread can no longer
  /// be handing it a message. cnats 3.4.1 looks a subscription up, lets go of the lock that
  /// guards the lookup, and only then locks the subscription: freed in between, the reader
  /// crashes (nats.c#637, fixed in 3.6). The reader handles what it reads in order, so once
  /// it has answered a PING sent after the unsubscribe, it is past any message for `sub`.
  void destroy_unsubscribed(natsSubscription* sub) noexcept;
  /// A new unique inbox subject.
  std::string new_inbox();
  /// The largest message the server takes, header block and payload (its max_payload), as
  /// it said when last connected.
  std::size_t max_payload() const noexcept;

  /// The link now: connected, how often lost and regained, publishes and requests retried.
  TransportHealth health() const;
  /// Calls `listener` at each loss and return of the link until the handle goes
  /// (Transport::watch).
  std::shared_ptr<void> watch(Transport::HealthListener listener);
  /// check(), saying why the connection is closed when crier did not close it.
  void check(natsStatus s, std::string_view what);
  /// Tells the listeners of something they should know that is not a change of the link
  /// (a consumer made again after another client deleted it).
  void notice(const std::string& what);

 private:
  struct Call;
  struct Pending {  // one try of one message of a publish() call, waiting for its ack
    Call* call;
    std::size_t index;
  };
  struct Reading;
  struct Awaited {  // one request of an ask_many() call, waiting for its answer
    Reading* reading;
    std::size_t index;
  };
  static void on_ack(natsConnection*, natsSubscription*, natsMsg* msg, void* self) noexcept;
  static void on_disconnected(natsConnection*, void* self) noexcept;
  static void on_reconnected(natsConnection*, void* self) noexcept;
  static void on_closed(natsConnection*, void* self) noexcept;
  static void on_acks_complete(void* self) noexcept;
  // cnats's asynchronous errors: a right the server refused this connection's user is kept.
  static void on_async_error(natsConnection*, natsSubscription*, natsStatus s, void* self) noexcept;
  // A right the server refused (a -ERR "Permissions Violation": the message or subscription is
  // dropped, said to this client only), numbered so that a call looks only at what was
  // refused after it began.
  struct Refusal {
    std::uint64_t number = 0;
    bool subscribe = false;  // a subscription refused, else a publish
    std::string subject{};
    std::string said{};  // the server's words
  };
  // Why a call cannot get an answer, when the server has refused since refusal number `since`
  // a publish to `subject` or a subscription to an inbox (where every answer comes), with the
  // rights a bus needs; empty when it has not.
  std::string refused_since(std::uint64_t since, std::string_view subject) const CRIER_REQUIRES(mu_);
  // The rights a bus's server user needs, as an error says them.
  std::string rights_text() const;
  // The requests (`bodies`, to `subject`) sent kAtOnce at a time, each answered on the ack
  // subscription: the answers that `good` takes, in order; from the first window with an
  // answer missing or not good on, none (for the caller to ask again one by one).
  std::vector<Msg> ask_many(const std::string& subject, const std::vector<std::string>& bodies,
                            const std::function<bool(natsMsg*)>& good);
  // A request answered by JetStream: retried through timeouts, no responders (also a 503
  // status answer) and a lost connection, for up to the publish timeout. When `stream` is
  // given and nothing answers, whether it exists is asked: missing, ApiError(kStreamNotFound).
  Msg request(const std::string& subject, const std::string& data, std::string_view what,
              const std::string* stream = nullptr);
  // The server connected to (its URL, credentials hidden) when it says in its INFO, read on a
  // connection of our own (cnats keeps no word of JetStream from it), that it runs no
  // JetStream and is in no cluster; empty when it runs JetStream, is in a cluster (an
  // election), cannot be asked, or the bus's JetStream is a domain's, reached through others.
  std::string server_without_jetstream();
  // Whether the JetStream API says `stream` does not exist, asked once (false when it says
  // nothing within a try): what no responders means is told apart from a leader election.
  bool stream_missing(const std::string& stream);
  void state_changed(natsConnection* nc, ConnectionState state) noexcept;
  void settle(Pending p, const PublishAnswer& answer) CRIER_REQUIRES(mu_);
  // The one message of a publish() call, asked as a request: cnats writes it at once and hands
  // its acknowledgement (`reply`) to this thread. A message sent with others waits for a flush,
  // which costs a PING round trip (a single publish took a quarter longer, measured 2026-12-07).
  natsStatus ask(const Outgoing& m, std::string& bytes, Msg& reply);
  // What ask() got for the call's one try, in pending_ while asked (no answer settles it there:
  // the answer came to this thread): settled, failed, or to be sent again.
  void settle_asked(Call& call, natsStatus s, natsMsg* reply) CRIER_REQUIRES(mu_);
  // A try in flight that cnats could not send (`s`): tried again after a back-off, or, for what
  // no retry mends, the call fails.
  void not_sent(Call& call, std::size_t index, natsStatus s) CRIER_REQUIRES(mu_);
  // One try of one message, its acknowledgement to come on `<ack_prefix_><token>`. `reply`
  // and `bytes` are buffers kept by the caller: no allocation for them per message.
  natsStatus send_message(const Outgoing& m, std::uint64_t token, std::string& reply, std::string& bytes, Msg& msg);

  Options options_;
  const std::string api_prefix_;  // "$JS.API." or "$JS.<domain>.API."
  natsOptions* opts_ = nullptr;
  natsConnection* nc_ = nullptr;
  natsSubscription* acks_ = nullptr;
  const Build build_ = usual_build();
  std::string ack_prefix_;  // "<inbox>."; with a token after it, a publish's or an ask_many request's reply subject

  Mutex mu_;
  CondVar cv_;
  std::map<std::uint64_t, Pending> pending_ CRIER_GUARDED_BY(mu_);
  std::map<std::uint64_t, Awaited> reads_ CRIER_GUARDED_BY(mu_);  // answered on the ack subscription too
  std::uint64_t next_token_ CRIER_GUARDED_BY(mu_) = 1;
  bool acks_complete_ CRIER_GUARDED_BY(mu_) = false;
  bool closed_ CRIER_GUARDED_BY(mu_) = false;
  std::deque<Refusal> refusals_ CRIER_GUARDED_BY(mu_);  // the newest few
  std::uint64_t refusals_heard_ CRIER_GUARDED_BY(mu_) = 0;

  crier::detail::HealthListeners listeners_;
  // "the connection to <server>" (the one connected to last, when known).
  std::string connection_text();
  // What a request that got no answer says while the connection is down.
  std::string disconnected_text();
  // Why the connection is closed when crier did not close it (the server ended it with an
  // -ERR cnats does not reconnect after, for one), with what to look at; empty otherwise.
  std::string ended_text();
  Mutex server_mu_;
  std::string server_ CRIER_GUARDED_BY(server_mu_);  // the one connected to last: what a loss names

  std::atomic<bool> connected_{false};
  std::atomic<bool> closing_{false};         // the destructor closes the connection
  std::atomic<bool> acks_permitted_{false};  // require_ack_permission found them permitted
  std::atomic<std::uint64_t> disconnects_{0}, reconnects_{0}, retries_{0};
};

}  // namespace crier::nats
