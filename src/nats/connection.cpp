#include "nats/connection.hpp"

#include "nats/header_block.hpp"
#include "nats/names.hpp"
#include "nats/server_info.hpp"

#include <crier/open.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <thread>

namespace crier::nats {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long one try of a publish or an API request waits for its answer before it is sent
// again (a leader election takes 5-6 s; a retried publish is de-duplicated by its id).
constexpr milliseconds kTryTimeout{2000};
// How long a connection waits for a server's first words (its INFO): cnats's default, set so
// that the error can say it.
constexpr milliseconds kConnectTimeout{2000};

int64_t reconnect_delay(natsConnection*, int attempts, void*) {
  const int shift = std::min(attempts, 6);
  return std::min<int64_t>(int64_t{25} << shift, 2000);  // 25 ms doubling to 2 s: forever
}

// The servers as errors and reports say them: without their passwords or tokens.
std::string servers_text(const std::vector<std::string>& servers) {
  std::string s;
  for (const auto& u : servers) s += (s.empty() ? "" : ", ") + redacted_target(u);
  return s;
}

long long remaining_ms(Clock::time_point deadline) {
  return std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
}

// How a stream that is missing is said, after what was being done.
std::string missing_stream_text(const std::string& stream) {
  return "stream " + stream + " is missing (deleted by another client?)";
}

// How long a JetStream request that meets no responders is retried when the server connected
// to says it runs no JetStream and is in no cluster (started without -js, the commonest
// mistake) rather than publish_timeout: time for a leaf node's link to a server that runs it
// to come up.
constexpr milliseconds kNoJetStreamGrace{3000};

// What an API request that meets no responders may mean, for a bus in JetStream `domain`.
std::string no_responders_text(const std::string& domain) {
  if (domain.empty()) return "no responders: JetStream not enabled, or electing a leader";
  return "no responders: no JetStream of domain " + domain +
         " reachable from this server (is it the domain in the servers' configuration?), or electing a leader";
}

// Which credentials a connection offers, for an error that says why a server refused it.
std::string credentials_text(const Options& o) {
  if (!o.credentials_file.empty()) return "the credentials file " + o.credentials_file;
  if (!o.token.empty()) return "a token";
  if (!o.user.empty()) return "user " + o.user + " and a password";
  return "no credentials";
}

// How many refused rights a connection keeps: a call that began before the oldest was
// refused is told at its timeout, as without them.
constexpr std::size_t kRefusalsKept = 32;

// The subject between the quotes of the server's `Permissions Violation for Publish to "x"`
// (or `for Subscription to "x"`, perhaps with `using queue` after it). Empty if not that.
std::string refused_subject(std::string_view said, std::string_view action) {
  const std::string head = "for " + std::string(action) + " to \"";
  const auto at = said.find(head);
  if (at == std::string_view::npos) return {};
  const auto from = at + head.size();
  return std::string(said.substr(from, said.find('"', from) - from));  // cnats cuts a long text short
}

}  // namespace

void check(natsStatus s, std::string_view what) {
  if (s == NATS_OK) return;
  std::string text = natsStatus_GetText(s);
  natsStatus last_status = NATS_OK;  // the thread's last error is ours only if its status is
  if (const char* last = nats_GetLastError(&last_status); last && *last && last_status == s) text = last;
  // cnats puts its source line first ("(conn.c:1905): Authorization Violation"): not for users.
  if (text.starts_with('(')) {
    if (const auto close = text.find("): "); close != std::string::npos) text.erase(0, close + 3);
  }
  throw Error(Errc::transport_error, std::string(what) + ": " + text);
}

HeaderViews header_views_of(natsMsg* m) {
  HeaderViews out;
  header_views_of(m, out);
  return out;
}

void header_views_of(natsMsg* m, HeaderViews& out) {
  if (const auto block = header_block_of(m)) {
    if (block->empty()) return out.clear();
    if (parse_header_block(*block, out)) return;
  }
  out.clear();
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(m, &keys, &count) != NATS_OK) return;
  out.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const char* value = nullptr;  // the first; no array to allocate, as for all of them
    if (natsMsgHeader_Get(m, keys[i], &value) == NATS_OK && value) out.emplace_back(keys[i], value);
  }
  free(keys);
}

int status_of(natsMsg* m) {
  if (natsMsg_GetDataLength(m) != 0) return 0;
  // Read in place: cnats's reading would leave a data message's headers for cnats to read.
  if (const auto block = header_block_of(m)) return status_of_block(*block);
  const char* status = nullptr;
  if (natsMsgHeader_Get(m, "Status", &status) != NATS_OK || status == nullptr) return 0;
  return std::atoi(status);
}

std::string_view payload_of(natsMsg* m) {
  const char* d = natsMsg_GetData(m);
  return d ? std::string_view(d, static_cast<std::size_t>(natsMsg_GetDataLength(m))) : std::string_view{};
}

// What one publish() call waits for.
struct Connection::Call {
  struct Try {
    std::uint64_t token = 0;  // 0: not in flight
    Clock::time_point sent{};
    std::uint64_t disconnects = 0;  // the connection's losses when it was sent
    Clock::time_point not_before{};
    bool done = false;
    std::uint64_t seq = 0;
  };
  std::vector<Try> tries;
  std::size_t left = 0;
  std::string problem;      // the last reason a try failed
  std::string fatal;        // an answer no retry changes
  int fatal_code = 0;       // its JetStream error code, if it was one
  bool unanswered = false;  // a try met no responders: is the stream there?
  bool looked_up = false;   // ... asked once
  milliseconds backoff = kFirstBackoff;
  std::uint64_t refusals_before = 0;     // refused rights heard before the call
  std::uint64_t refusals_looked_at = 0;  // ... and when it last looked at them
};

Connection::Connection(const Options& options)
    : options_(options), api_prefix_(options.domain.empty() ? "$JS.API." : "$JS." + options.domain + ".API.") {
  if (options_.servers.empty()) throw Error(Errc::invalid_argument, "nats: no server URL given");
  check(natsOptions_Create(&opts_), "nats: options");
  std::vector<const char*> urls;
  bool tls = options_.tls;
  for (const auto& u : options_.servers) {
    if (const std::string problem = server_url_problem(u); !problem.empty())
      throw Error(Errc::invalid_argument, "nats: server URL '" + redacted_target(u) + "': " + problem);
    urls.push_back(u.c_str());
    if (u.rfind("tls://", 0) == 0) tls = true;
  }
  const std::string name = options_.connection_name.empty() ? "crier" : options_.connection_name;
  check(natsOptions_SetServers(opts_, urls.data(), static_cast<int>(urls.size())), "nats: server URLs");
  check(natsOptions_SetName(opts_, name.c_str()), "nats: connection name");
  check(natsOptions_SetMaxReconnect(opts_, -1), "nats: reconnect");
  check(natsOptions_SetTimeout(opts_, kConnectTimeout.count()), "nats: connect timeout");
  check(natsOptions_SetCustomReconnectDelay(opts_, reconnect_delay, nullptr), "nats: reconnect delay");
  check(natsOptions_SetDisconnectedCB(opts_, on_disconnected, this), "nats: callbacks");
  check(natsOptions_SetReconnectedCB(opts_, on_reconnected, this), "nats: callbacks");
  check(natsOptions_SetClosedCB(opts_, on_closed, this), "nats: callbacks");
  // A request whose connection is lost fails at once, and is sent again on the next, rather
  // than waiting out its try for an answer that was lost with it.
  check(natsOptions_SetFailRequestsOnDisconnect(opts_, true), "nats: requests");
  check(natsOptions_SetErrorHandler(opts_, on_async_error, this), "nats: callbacks");
  if (!options_.user.empty())
    check(natsOptions_SetUserInfo(opts_, options_.user.c_str(), options_.password.c_str()), "nats: user");
  if (!options_.token.empty()) check(natsOptions_SetToken(opts_, options_.token.c_str()), "nats: token");
  if (!options_.credentials_file.empty())
    check(natsOptions_SetUserCredentialsFromFiles(opts_, options_.credentials_file.c_str(), nullptr),
          "nats: credentials file " + options_.credentials_file);
  if (tls) {
    check(natsOptions_SetSecure(opts_, true), "nats: TLS");
    if (!options_.tls_ca_file.empty())
      check(natsOptions_LoadCATrustedCertificates(opts_, options_.tls_ca_file.c_str()),
            "nats: TLS CA file " + options_.tls_ca_file);
    if (!options_.tls_cert_file.empty())
      check(natsOptions_LoadCertificatesChain(opts_, options_.tls_cert_file.c_str(), options_.tls_key_file.c_str()),
            "nats: TLS certificate " + options_.tls_cert_file);
    if (!options_.tls_expected_hostname.empty())
      check(natsOptions_SetExpectedHostname(opts_, options_.tls_expected_hostname.c_str()), "nats: TLS host name");
  }

  // Wait for a first server as long as a publish would: a cluster may be starting beside us.
  const auto deadline = Clock::now() + options_.publish_timeout;
  auto backoff = kFirstBackoff;
  for (;;) {
    const natsStatus s = natsConnection_Connect(&nc_, opts_);
    if (s == NATS_OK) break;
    nc_ = nullptr;
    const auto now = Clock::now();
    if (s != NATS_NO_SERVER || now >= deadline) {
      natsOptions_Destroy(opts_);
      const std::string what = "nats: cannot connect to " + servers_text(options_.servers);
      // Said in words rather than as cnats's source line ("(unix/sock.c:58): Timeout").
      if (s == NATS_NO_SERVER)
        throw Error(Errc::transport_error, what + ": nothing answers there (tried for " +
                                               std::to_string(options_.publish_timeout.count()) + " ms)");
      if (s == NATS_TIMEOUT)
        throw Error(Errc::transport_error, what + ": no NATS server answered within " +
                                               std::to_string(kConnectTimeout.count()) +
                                               " ms (a server that is stuck, or not NATS?)");
      std::string context;  // what cnats's text leaves out
      if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED) context = " with " + credentials_text(options_);
      // A server that wants a client certificate ends the session without a word; cnats then
      // says only "Expected 'PONG', got ''".
      else if (s == NATS_PROTOCOL_ERROR && tls && options_.tls_cert_file.empty())
        context = " (the server ended the TLS session: does it want a client certificate? none was given)";
      else if (const char* said = nats_GetLastError(nullptr); tls && said && std::strstr(said, "mismatch:"))
        context = options_.tls_expected_hostname.empty()
                      ? " (its certificate names another host: tls_expected_hostname says which name to expect)"
                      : " (its certificate does not name " + options_.tls_expected_hostname + ")";
      // A server that refuses a client says why after its INFO; cnats passes that on, or, as
      // the timing falls, loses it ("Expected 'PONG', got ''"): asked again, on a connection
      // of crier's own.
      if ((s == NATS_PROTOCOL_ERROR || s == NATS_ERR) && !tls)
        for (const std::string& url : options_.servers)
          if (const std::string refusal = read_server_refusal(url, kTryTimeout / 2); !refusal.empty())
            throw Error(Errc::transport_error,
                        what + ": " +
                            (options_.servers.size() == 1 ? "the server" : "the server at " + redacted_target(url)) +
                            " refuses this client: '" + refusal + "'" +
                            (refusal.find("connections exceeded") != std::string::npos
                                 ? " (its max_connections, or its account's or user's, is reached)"
                                 : ""));
      check(s, what + context);
    }
    // Not synchronisation: a retry's back-off, the last try at the deadline (the error says
    // how long it tried).
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
  connected_ = true;
  state_changed(nc_, ConnectionState::connected);

  ack_prefix_ = new_inbox() + ".";
  const std::string acks = ack_prefix_ + "*";
  natsStatus s = natsConnection_Subscribe(&acks_, nc_, acks.c_str(), on_ack, this);
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(acks_, -1, -1);  // never drop an ack
  if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(acks_, on_acks_complete, this);
  if (s != NATS_OK) {
    if (acks_) natsSubscription_Destroy(acks_);
    natsConnection_Destroy(nc_);
    natsOptions_Destroy(opts_);
    check(s, "nats: subscribing to publish acknowledgements");
  }
}

Connection::~Connection() {
  // No callback may run once this object is gone: the ack subscription's handler has
  // returned for the last time when its completion callback ran, the connection's
  // callbacks when its closed callback ran.
  if (natsSubscription_Unsubscribe(acks_) == NATS_OK) {
    MutexLock lock(mu_);
    while (!acks_complete_) cv_.wait(mu_);
  }
  destroy_unsubscribed(acks_);
  closing_.store(true, std::memory_order_release);
  natsConnection_Close(nc_);
  {
    MutexLock lock(mu_);
    while (!closed_) cv_.wait(mu_);
  }
  natsConnection_Destroy(nc_);
  natsOptions_Destroy(opts_);
}

std::string Connection::new_inbox() {
  natsInbox* inbox = nullptr;
  check(natsInbox_Create(&inbox), "nats: inbox");
  std::string s(inbox);
  natsInbox_Destroy(inbox);
  return s;
}

void Connection::require_ack_permission(const std::string& stream) {
  if (acks_permitted_.load(std::memory_order_acquire)) return;
  // A subject of its own each time: cnats keeps the last error, and an old refusal must not be
  // taken for this one. One token after the stream: no consumer's acknowledgements match it.
  static std::atomic<std::uint64_t> asked{0};
  const std::string subject = "$JS.ACK." + stream + ".crier_permission_check_" + std::to_string(++asked);
  // A refused publish is answered with -ERR, before the PONG that ends the flush.
  natsStatus s = natsConnection_PublishString(nc_, subject.c_str(), "");
  if (s == NATS_OK) s = natsConnection_FlushTimeout(nc_, kTryTimeout.count());
  if (s != NATS_OK) return;  // not known yet (the link is down): asked again by the next consumer
  const char* said = nullptr;
  if (natsConnection_GetLastError(nc_, &said) == NATS_NOT_PERMITTED && said != nullptr &&
      std::strstr(said, ("\"" + subject + "\"").c_str()) != nullptr) {  // the server quotes it
    throw Error(Errc::transport_error,
                "nats: the server's user for this connection may not publish to $JS.ACK.> (the server said: " +
                    std::string(said) +
                    "): it would drop every acknowledgement, and every event would come back after AckWait for "
                    "ever. " +
                    rights_text());
  }
  acks_permitted_.store(true, std::memory_order_release);
}

std::string Connection::rights_text() const {
  const std::string& p = options_.subject_prefix;
  return "A bus needs publish rights to " + api_prefix_ + ">, $JS.ACK.>, " + p + ".>, " + p + "-redrive.>, " + p +
         "-dlq.> and " + p + "-attempts.>, and subscribe rights to _INBOX.>";
}

void Connection::on_async_error(natsConnection*, natsSubscription*, natsStatus s, void* self) noexcept {
  if (s != NATS_NOT_PERMITTED) return;
  // cnats hands the server's words to this thread alone, as its last error: read without a race.
  const char* text = nats_GetLastError(nullptr);
  Refusal r;
  r.said = text ? text : "";
  r.subject = refused_subject(r.said, "Publish");
  if (r.subject.empty()) {
    r.subject = refused_subject(r.said, "Subscription");
    r.subscribe = true;
  }
  if (r.subject.empty()) return;
  auto* c = static_cast<Connection*>(self);
  MutexLock lock(c->mu_);
  r.number = ++c->refusals_heard_;
  c->refusals_.push_back(std::move(r));
  if (c->refusals_.size() > kRefusalsKept) c->refusals_.pop_front();
  c->cv_.notify_all();  // a publish waiting for what was refused fails now
}

std::string Connection::refused_since(std::uint64_t since, std::string_view subject) const {
  if (refusals_heard_ <= since) return {};
  for (const auto& r : refusals_) {
    if (r.number <= since) continue;
    if (!r.subscribe && r.subject == subject)
      return "the server's user for this connection may not publish to " + r.subject + " (the server said: " + r.said +
             "). " + rights_text();
    if (r.subscribe && r.subject.starts_with("_INBOX."))
      return "the server's user for this connection may not subscribe to " + r.subject +
             ", where the answers come (the server said: " + r.said + "). " + rights_text();
  }
  return {};
}

void Connection::send(const char* subject, std::string_view data, const char* reply) {
  const int n = static_cast<int>(data.size());
  const natsStatus s = reply ? natsConnection_PublishRequest(nc_, subject, reply, data.data(), n)
                             : natsConnection_Publish(nc_, subject, data.data(), n);
  if (s != NATS_OK) check(s, std::string("nats: sending to ") + subject);
}

Msg Connection::request(const std::string& subject, const std::string& data, std::string_view what,
                        const std::string* stream) {
  auto deadline = Clock::now() + options_.publish_timeout;
  auto backoff = kFirstBackoff;
  std::string problem = "no try finished";
  std::optional<std::string> without_jetstream;  // asked at the first no responders
  std::uint64_t refusals_before = 0;
  {
    MutexLock lock(mu_);
    refusals_before = refusals_heard_;
  }
  for (;;) {
    const auto left = remaining_ms(deadline);
    if (left <= 0 && without_jetstream && !without_jetstream->empty())
      throw Error(Errc::transport_error, std::string(what) + ": the server at " + *without_jetstream +
                                             " runs no JetStream (its INFO says none), and no other server answered "
                                             "for it within " +
                                             std::to_string(kNoJetStreamGrace.count()) +
                                             " ms: start nats-server with -js, or give its configuration a jetstream "
                                             "block");
    if (left <= 0)
      throw Error(Errc::transport_error, std::string(what) + ": no answer from JetStream within " +
                                             std::to_string(options_.publish_timeout.count()) + " ms (" + problem +
                                             ")");
    natsMsg* raw = nullptr;
    const natsStatus s = natsConnection_Request(&raw, nc_, subject.c_str(), data.data(), static_cast<int>(data.size()),
                                                std::min<long long>(left, kTryTimeout.count()));
    Msg reply(raw);
    if (s == NATS_OK && status_of(raw) != 503) return reply;
    retries_.fetch_add(1, std::memory_order_relaxed);  // a failed try (sent again if time is left)
    if (s == NATS_CONNECTION_CLOSED) check(s, what);
    {
      MutexLock lock(mu_);
      if (std::string why = refused_since(refusals_before, subject); !why.empty())
        throw Error(Errc::transport_error, std::string(what) + ": " + why);
    }
    // A direct get from a stream that is missing goes unanswered (JetStream's import of the
    // API takes it) or meets no responders, as during an election: the API tells them apart.
    if (stream && stream_missing(*stream))
      throw ApiError(kStreamNotFound, std::string(what) + ": " + missing_stream_text(*stream));
    stream = nullptr;  // asked once
    if (s == NATS_TIMEOUT) {
      problem = connected_ ? "timed out waiting for an answer" : disconnected_text();
      continue;  // waited already
    }
    problem = s == NATS_OK || s == NATS_NO_RESPONDERS ? no_responders_text(options_.domain) : natsStatus_GetText(s);
    if ((s == NATS_OK || s == NATS_NO_RESPONDERS) && !without_jetstream) {
      without_jetstream = server_without_jetstream();
      if (!without_jetstream->empty()) deadline = std::min(deadline, Clock::now() + kNoJetStreamGrace);
    }
    std::this_thread::sleep_for(std::min(backoff, milliseconds(std::max<long long>(remaining_ms(deadline), 0))));
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

std::string Connection::server_without_jetstream() {
  char url[512] = "";
  if (!options_.domain.empty() || natsConnection_GetConnectedUrl(nc_, url, sizeof url) != NATS_OK) return {};
  const auto info = read_server_info(url, kTryTimeout);
  if (!info.is_object() || info.contains("cluster")) return {};
  if (const auto jetstream = info.find("jetstream"); jetstream != info.end() && *jetstream != false) return {};
  return redacted_target(url);
}

nlohmann::json Connection::api(const std::string& api, const nlohmann::json& body, std::string_view what) {
  Msg reply = request(api_subject(api), body.is_null() ? std::string() : body.dump(), what);
  if (const int status = status_of(reply.get()); status != 0)
    throw Error(Errc::transport_error, std::string(what) + ": JetStream answered status " + std::to_string(status));
  nlohmann::json answer = nlohmann::json::parse(payload_of(reply.get()), nullptr, false);
  if (answer.is_discarded())
    throw Error(Errc::transport_error, std::string(what) + ": JetStream answered with something not JSON");
  if (const auto& e = member(answer, "error"); !e.is_null()) {
    throw ApiError(error_number(e, "err_code"), std::string(what) + ": " + error_text(e));
  }
  return answer;
}

namespace {

// A direct get's answer (status 0) as read.
Connection::Stored stored_of(Msg reply) {
  Connection::Stored out;
  out.headers = header_views_of(reply.get());
  out.payload.assign(payload_of(reply.get()));
  out.message = std::move(reply);
  if (const auto* v = header(out.headers, "Nats-Sequence"))
    out.seq = std::strtoull(std::string(*v).c_str(), nullptr, 10);
  if (const auto* v = header(out.headers, "Nats-Subject")) out.subject = *v;
  if (const auto* v = header(out.headers, "Nats-Time-Stamp")) out.time = *v;
  return out;
}

}  // namespace

std::optional<Connection::Stored> Connection::direct_get(const std::string& stream, const nlohmann::json& request,
                                                         std::string_view what) {
  Msg reply = this->request(api_subject("DIRECT.GET." + stream), request.dump(), what, &stream);
  if (const int status = status_of(reply.get()); status == 404) {
    return std::nullopt;
  } else if (status != 0) {
    throw Error(Errc::transport_error,
                std::string(what) + ": reading stream " + stream + " answered status " + std::to_string(status));
  }
  return stored_of(std::move(reply));
}

// One window of ask_many: an answer (or nothing yet) for each of its requests.
struct Connection::Reading {
  std::vector<Msg> answers;
  std::size_t left = 0;  // not answered yet
};

std::vector<Msg> Connection::ask_many(const std::string& subject, const std::vector<std::string>& bodies,
                                      const std::function<bool(natsMsg*)>& good) {
  std::vector<Msg> out(bodies.size());
  std::string reply;
  // The answers come on the ack subscription, which lives as long as the connection: a
  // subscription of its own, destroyed while a late answer came in, could crash cnats 3.4.1
  // (a message for a destroyed subscription, nats.c#637).
  for (std::size_t from = 0; from < bodies.size();) {
    const std::size_t to = std::min(bodies.size(), from + kAtOnce);
    Reading reading;
    reading.answers.resize(to - from);
    reading.left = to - from;
    std::vector<std::uint64_t> tokens;
    {
      MutexLock lock(mu_);
      for (std::size_t i = from; i < to; ++i) {
        tokens.push_back(next_token_++);
        reads_[tokens.back()] = {&reading, i - from};
      }
    }
    bool sent = true;
    for (std::size_t i = from; i < to && sent; ++i) {
      char digits[20];
      const auto end = std::to_chars(digits, digits + sizeof digits, tokens[i - from]).ptr;
      reply.assign(ack_prefix_).append(digits, end);
      sent = natsConnection_PublishRequest(nc_, subject.c_str(), reply.c_str(), bodies[i].data(),
                                           static_cast<int>(bodies[i].size())) == NATS_OK;
    }
    flush();
    {
      MutexLock lock(mu_);
      const auto deadline = Clock::now() + kTryTimeout;
      while (sent && reading.left > 0 && Clock::now() < deadline) (void)cv_.wait_until(mu_, deadline);
      for (const auto token : tokens) reads_.erase(token);  // an answer after this is dropped
    }
    bool whole = true;
    for (std::size_t k = 0; k < reading.answers.size(); ++k) {
      if (reading.answers[k] && good(reading.answers[k].get())) out[from + k] = std::move(reading.answers[k]);
      whole = whole && out[from + k];
    }
    if (!whole) break;  // the link or the stream in trouble: the caller asks the rest again
    from = to;
  }
  return out;
}

std::vector<std::optional<Connection::Stored>> Connection::direct_get_many(const std::string& stream,
                                                                           const std::vector<nlohmann::json>& requests,
                                                                           std::string_view what) {
  std::vector<std::optional<Stored>> out(requests.size());
  std::vector<Msg> answers(requests.size());
  if (requests.size() > 1) {
    std::vector<std::string> bodies;
    for (const auto& r : requests) bodies.push_back(r.dump());
    answers = ask_many(api_subject("DIRECT.GET." + stream), bodies, [](natsMsg* m) {
      const int status = status_of(m);
      return status == 0 || status == 404;
    });
  }
  // What was not answered at once (one request, no link, an election, a missing stream) is
  // asked again one by one, through direct_get's retries and errors.
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!answers[i])
      out[i] = direct_get(stream, requests[i], what);
    else if (status_of(answers[i].get()) == 0)
      out[i] = stored_of(std::move(answers[i]));
  }
  return out;
}

void Connection::delete_messages(const std::string& stream, const std::vector<std::uint64_t>& seqs,
                                 std::string_view what) {
  std::vector<std::string> bodies;
  for (const auto seq : seqs) bodies.push_back(nlohmann::json{{"seq", seq}}.dump());
  const auto answers = seqs.size() > 1 ? ask_many(api_subject("STREAM.MSG.DELETE." + stream), bodies,
                                                  [](natsMsg* m) {
                                                    if (status_of(m) != 0) return false;
                                                    const auto a = nlohmann::json::parse(payload_of(m), nullptr, false);
                                                    return a.is_object() && a.value("success", false);
                                                  })
                                       : std::vector<Msg>(seqs.size());
  // What was not deleted at once is asked again through api(), which retries and says why.
  for (std::size_t i = 0; i < seqs.size(); ++i)
    if (!answers[i])
      (void)api("STREAM.MSG.DELETE." + stream, {{"seq", seqs[i]}}, std::string(what) + " " + std::to_string(seqs[i]));
}

bool Connection::stream_missing(const std::string& stream) {
  natsMsg* raw = nullptr;
  const std::string subject = api_subject("STREAM.INFO." + stream);
  if (natsConnection_Request(&raw, nc_, subject.c_str(), nullptr, 0, kTryTimeout.count()) != NATS_OK) return false;
  Msg reply(raw);
  const auto answer = nlohmann::json::parse(payload_of(raw), nullptr, false);
  return error_number(member(answer, "error"), "err_code") == kStreamNotFound;
}

std::uint64_t Connection::subject_count(const std::string& stream, const std::string& filter) {
  const auto info = api("STREAM.INFO." + stream, {{"subjects_filter", filter}}, "nats: stream " + stream);
  std::uint64_t n = 0;
  for (const auto& [subject, count] : member(member(info, "state"), "subjects").items())
    n += count_of(count, "the messages on " + subject);
  return n;
}

std::vector<std::uint64_t> Connection::publish(const std::string& stream, const std::vector<Outgoing>& messages,
                                               std::string_view what) {
  Call call;
  call.tries.resize(messages.size());
  call.left = messages.size();
  const auto deadline = Clock::now() + options_.publish_timeout;
  std::vector<std::pair<std::size_t, std::uint64_t>> sending;  // (index, token)
  std::string reply, bytes;                                    // each message's, in turn

  MutexLock lock(mu_);
  call.refusals_before = call.refusals_looked_at = refusals_heard_;
  while (call.left > 0 && call.fatal.empty()) {
    if (call.refusals_looked_at != refusals_heard_) {  // the server refused something: this call's?
      call.refusals_looked_at = refusals_heard_;
      for (std::size_t i = 0; i < messages.size() && call.fatal.empty(); ++i)
        if (!call.tries[i].done) call.fatal = refused_since(call.refusals_before, messages[i].subject);
      if (!call.fatal.empty()) break;
    }
    if (call.unanswered && !std::exchange(call.looked_up, true)) {
      lock.unlock();
      const bool missing = stream_missing(stream);
      lock.lock();
      if (missing) {
        call.fatal = missing_stream_text(stream) + "; crier makes its streams when it connects";
        call.fatal_code = kStreamNotFound;
        break;
      }
    }
    const auto now = Clock::now();
    if (now >= deadline) break;
    auto wake = deadline;
    // What to send: first tries, and retries whose back-off is over, as far as there is room
    // in flight; what waited past its try's timeout is taken back first.
    sending.clear();
    std::size_t room = options_.max_in_flight > pending_.size() ? options_.max_in_flight - pending_.size() : 0;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      auto& t = call.tries[i];
      if (t.done) continue;
      if (t.token != 0) {
        // Sent on a connection lost since: its acknowledgement, if any, was lost with it.
        const bool cut_off = connected_ && t.disconnects != disconnects_.load(std::memory_order_relaxed);
        if (!cut_off && now - t.sent < kTryTimeout) {
          wake = std::min(wake, t.sent + kTryTimeout);
          continue;
        }
        pending_.erase(t.token);
        t.token = 0;
        ++room;
        call.problem = cut_off ? "the connection was lost before its acknowledgement came"
                               : "no acknowledgement within " + std::to_string(kTryTimeout.count()) + " ms";
        retries_.fetch_add(1, std::memory_order_relaxed);
      }
      if (now < t.not_before) {
        wake = std::min(wake, t.not_before);
        continue;
      }
      if (room == 0) continue;  // an acknowledgement that makes room wakes us
      --room;
      t.token = next_token_++;
      t.sent = now;
      t.disconnects = disconnects_.load(std::memory_order_relaxed);
      pending_.emplace(t.token, Pending{&call, i});
      sending.emplace_back(i, t.token);
    }
    if (!sending.empty() && messages.size() == 1) {
      lock.unlock();
      Msg reply;
      const natsStatus s = ask(messages.front(), bytes, reply);
      lock.lock();
      settle_asked(call, s, reply.get());
      continue;
    }
    if (!sending.empty()) {
      // Written together and flushed once: one write for many messages, and no wait for
      // cnats's flusher. cnats may block on a full buffer: never with our lock held.
      // The messages are destroyed together after: cnats hands each to its collector thread,
      // and wakes it once for many instead of once each.
      std::vector<std::pair<std::size_t, natsStatus>> failed;
      std::vector<Msg> sent(sending.size());
      lock.unlock();
      for (std::size_t k = 0; k < sending.size(); ++k) {
        const auto [i, token] = sending[k];
        if (const natsStatus s = send_message(messages[i], token, reply, bytes, sent[k]); s != NATS_OK)
          failed.emplace_back(i, s);
      }
      flush();
      sent.clear();
      lock.lock();
      for (const auto& [i, s] : failed)
        if (!call.tries[i].done && call.tries[i].token != 0) not_sent(call, i, s);
      continue;  // look again: what was sent now bounds the wait
    }
    (void)cv_.wait_until(mu_, wake);
  }
  for (auto& t : call.tries)  // nothing of this call may outlive it
    if (t.token != 0) pending_.erase(t.token);
  if (call.left == 0) {
    std::vector<std::uint64_t> seqs;
    seqs.reserve(call.tries.size());
    for (const auto& t : call.tries) seqs.push_back(t.seq);
    return seqs;
  }
  std::string why = !call.fatal.empty() ? call.fatal
                                        : "not acknowledged within the publish timeout of " +
                                              std::to_string(options_.publish_timeout.count()) + " ms (" +
                                              (!connected_            ? disconnected_text()
                                               : call.problem.empty() ? std::string("no acknowledgement came")
                                                                      : call.problem) +
                                              ")";
  if (call.fatal_code == kStoreFailed) why = "stream " + stream + " refused them: " + why;
  throw ApiError(call.fatal_code, std::string(what) + ": " + std::to_string(call.left) + " of " +
                                      std::to_string(messages.size()) + " not stored: " + why);
}

natsStatus Connection::ask(const Outgoing& m, std::string& bytes, Msg& reply) {
  Msg msg;
  natsStatus s = make_message(m, std::string(), build_, bytes, msg);
  natsMsg* raw = nullptr;
  if (s == NATS_OK) s = natsConnection_RequestMsg(&raw, nc_, msg.get(), kTryTimeout.count());
  reply.reset(raw);
  return s;
}

void Connection::settle_asked(Call& call, natsStatus s, natsMsg* reply) {
  auto& t = call.tries.front();
  if (pending_.size() >= options_.max_in_flight) cv_.notify_all();  // room again
  if (s == NATS_OK || s == NATS_NO_RESPONDERS) {
    pending_.erase(t.token);
    const int status = s == NATS_OK ? status_of(reply) : 503;
    if (status == 503) call.unanswered = true;
    settle(Pending{&call, 0}, read_publish_answer(status, s == NATS_OK ? payload_of(reply) : ""));
  } else if (s == NATS_TIMEOUT) {  // waited already: sent again at once
    pending_.erase(t.token);
    t.token = 0;
    call.problem = "no acknowledgement within " + std::to_string(kTryTimeout.count()) + " ms";
    retries_.fetch_add(1, std::memory_order_relaxed);
  } else {
    not_sent(call, 0, s);
  }
}

void Connection::not_sent(Call& call, std::size_t index, natsStatus s) {
  auto& t = call.tries[index];
  pending_.erase(t.token);
  t.token = 0;
  t.not_before = Clock::now() + call.backoff;
  call.backoff = std::min(call.backoff * 2, kMaxBackoff);
  call.problem = natsStatus_GetText(s);
  if (s == NATS_CONNECTION_CLOSED || s == NATS_INVALID_ARG || s == NATS_MAX_PAYLOAD) {
    const std::string ended = s == NATS_CONNECTION_CLOSED ? ended_text() : std::string();
    call.fatal = ended.empty() ? std::string("cannot send: ") + natsStatus_GetText(s) : ended;
  }
}

natsStatus Connection::send_message(const Outgoing& m, std::uint64_t token, std::string& reply, std::string& bytes,
                                    Msg& msg) {
  char digits[20];
  const auto end = std::to_chars(digits, digits + sizeof digits, token).ptr;
  reply.assign(ack_prefix_).append(digits, end);
  natsStatus s = make_message(m, reply, build_, bytes, msg);
  if (s == NATS_OK) s = natsConnection_PublishMsg(nc_, msg.get());
  return s;
}

void Connection::destroy_unsubscribed(natsSubscription* sub) noexcept {
  // While reconnecting no reader runs (the one that lost the connection is past its last
  // message). A server that does not answer within the bound leaves the small risk: a
  // destructor must end.
  if (!natsConnection_IsReconnecting(nc_)) (void)natsConnection_FlushTimeout(nc_, 1000);
  natsSubscription_Destroy(sub);
}

std::size_t Connection::max_payload() const noexcept {
  const std::int64_t n = natsConnection_GetMaxPayload(nc_);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

void Connection::flush() noexcept {
  // cnats writes what is buffered, then a PING, and waits for the PONG: at most a
  // millisecond, which is also how long its flusher would have let the bytes wait.
  (void)natsConnection_FlushTimeout(nc_, 1);
}

void Connection::on_ack(natsConnection*, natsSubscription*, natsMsg* raw, void* self) noexcept {
  auto* c = static_cast<Connection*>(self);
  Msg msg(raw);
  const char* subject = natsMsg_GetSubject(raw);
  const char* dot = subject ? std::strrchr(subject, '.') : nullptr;
  if (dot == nullptr) return;
  const std::uint64_t token = std::strtoull(dot + 1, nullptr, 10);
  MutexLock lock(c->mu_);
  const auto it = c->pending_.find(token);
  if (it == c->pending_.end()) {
    if (const auto r = c->reads_.find(token); r != c->reads_.end()) {  // an ask_many request's answer
      r->second.reading->answers[r->second.index] = std::move(msg);
      if (--r->second.reading->left == 0) c->cv_.notify_all();
      c->reads_.erase(r);
    }
    return;  // else a try already given up on
  }
  // Read under the lock: read before it (in parallel with the publisher), publish ran a
  // third slower here and its thread's CPU doubled (measured 2026-12-04).
  const int status = status_of(raw);
  const PublishAnswer answer = read_publish_answer(status, payload_of(raw));
  const Pending p = it->second;
  if (status == 503) p.call->unanswered = true;
  const bool was_full = c->pending_.size() >= c->options_.max_in_flight;
  c->pending_.erase(it);
  c->settle(p, answer);
  // Wake publishers only when one has something to do: its call is over, a message of it
  // must be sent again, or there is room in flight again.
  if (was_full || p.call->left == 0 || !p.call->tries[p.index].done || !p.call->fatal.empty()) c->cv_.notify_all();
}

void Connection::settle(Pending p, const PublishAnswer& answer) {
  Call& call = *p.call;
  auto& t = call.tries[p.index];
  t.token = 0;
  switch (answer.kind) {
    case PublishAnswer::Kind::stored:
      t.done = true;
      t.seq = answer.seq;
      --call.left;
      return;
    case PublishAnswer::Kind::again:
      t.not_before = Clock::now() + call.backoff;
      call.backoff = std::min(call.backoff * 2, kMaxBackoff);
      call.problem = answer.problem;
      retries_.fetch_add(1, std::memory_order_relaxed);
      return;
    case PublishAnswer::Kind::refused:
      call.fatal = answer.problem;
      call.fatal_code = answer.err_code;
      return;
  }
}

void Connection::on_acks_complete(void* self) noexcept {
  auto* c = static_cast<Connection*>(self);
  MutexLock lock(c->mu_);
  c->acks_complete_ = true;
  c->cv_.notify_all();
}

void Connection::state_changed(natsConnection* nc, ConnectionState state) noexcept {
  std::string server;
  char url[256] = {0};
  if (natsConnection_GetConnectedUrl(nc, url, sizeof url) == NATS_OK) server = redacted_target(url);
  {
    MutexLock lock(server_mu_);
    if (!server.empty())
      server_ = server;
    else if (state == ConnectionState::disconnected)
      server = server_;  // cnats no longer says: the one it lost
  }
  try {  // a callback that throws must not take cnats's thread down
    if (options_.on_connection) options_.on_connection(state, server);
  } catch (...) {
  }
  if (state != ConnectionState::disconnected && state != ConnectionState::reconnected) return;
  // Closed for good (by the server, or by the destructor): no reconnecting to tell of; the
  // closed callback says why.
  if (state == ConnectionState::disconnected && natsConnection_IsClosed(nc)) return;
  const bool up = state == ConnectionState::reconnected;
  const std::string what = up ? "nats: connected again, to " + server
                              : "nats: connection to " + server + " lost; reconnecting to " +
                                    servers_text(options_.servers) + " (publishes wait up to " +
                                    std::to_string(options_.publish_timeout.count()) + " ms meanwhile)";
  listeners_.notify(up, what);
}

std::string Connection::connection_text() {
  MutexLock lock(server_mu_);
  return "the connection" + (server_.empty() ? std::string() : " to " + server_);
}

std::string Connection::disconnected_text() {
  return connection_text() + " is lost; reconnecting to " + servers_text(options_.servers);
}

std::shared_ptr<void> Connection::watch(Transport::HealthListener listener) {
  return listeners_.add(std::move(listener));
}

void Connection::notice(const std::string& what) { listeners_.notify(connected_.load(), what); }

void Connection::on_disconnected(natsConnection* nc, void* self) noexcept {
  auto* c = static_cast<Connection*>(self);
  c->connected_ = false;
  c->disconnects_.fetch_add(1, std::memory_order_relaxed);
  c->state_changed(nc, ConnectionState::disconnected);
}

void Connection::on_reconnected(natsConnection* nc, void* self) noexcept {
  auto* c = static_cast<Connection*>(self);
  c->connected_ = true;
  c->reconnects_.fetch_add(1, std::memory_order_relaxed);
  c->state_changed(nc, ConnectionState::reconnected);
  MutexLock lock(c->mu_);
  c->cv_.notify_all();  // publishes cut off by the loss are sent again now
}

void Connection::on_closed(natsConnection* nc, void* self) noexcept {
  auto* c = static_cast<Connection*>(self);
  c->connected_ = false;
  c->state_changed(nc, ConnectionState::closed);
  if (const std::string ended = c->ended_text(); !ended.empty())
    c->listeners_.notify(false,
                         "nats: " + ended + "; nothing is published or received until the transport is made again");
  // Last: once closed_ is seen, the destructor may free this object.
  MutexLock lock(c->mu_);
  c->closed_ = true;
  c->cv_.notify_all();
}

std::string Connection::ended_text() {
  if (closing_.load(std::memory_order_acquire)) return {};
  // Only the status: the text cnats keeps with it is rewritten by its reader thread, without a
  // copy handed out under its lock, when the server sends another -ERR (a race).
  const char* ignored = nullptr;
  const natsStatus why = natsConnection_GetLastError(nc_, &ignored);
  std::string text = connection_text() + " is closed for good: ";
  if (why == NATS_ERR)
    text +=
        "the server ended it with an error cnats does not reconnect after (a limit of the server's reached, such as "
        "its max_subscriptions, or its account's or user's: a bus's connection takes two subscriptions, and two "
        "more for each subscriber and event type; the server's log names it)";
  else
    text += why == NATS_OK ? "cnats gave no reason" : natsStatus_GetText(why);
  return text;
}

void Connection::check(natsStatus s, std::string_view what) {
  if (s == NATS_CONNECTION_CLOSED)
    if (const std::string ended = ended_text(); !ended.empty())
      throw Error(Errc::transport_error, std::string(what) + ": " + ended);
  crier::nats::check(s, what);
}

TransportHealth Connection::health() const {
  // The link as cnats has it now: its reconnected callback comes after the first answers on
  // the new link, and a look that just got one must not be told the link is down.
  const bool up = natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
  TransportHealth h{up, disconnects_.load(), reconnects_.load(), retries_.load(), {}};
  char url[256] = {0};
  if (h.connected && natsConnection_GetConnectedUrl(nc_, url, sizeof url) == NATS_OK) h.server = redacted_target(url);
  return h;
}

}  // namespace crier::nats
