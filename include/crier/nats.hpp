// crier across hosts: NATS JetStream.
//
//   crier::Bus bus{crier::nats::connect({.servers = {"nats://10.0.0.1:4222", "nats://10.0.0.2:4222"},
//                                        .stream = "ORDERS", .replicas = 3})};
//   // the rest of the program is unchanged
//
// Every event type is a subject (`<subject_prefix>.<type>`) of one stream. publish() returns
// once the stream acknowledged the event (stored by a quorum of its replicas); publishes are
// pipelined, and retried with the same `Nats-Msg-Id` (the event id) across a lost connection
// or a leader election until `publish_timeout`, so that a retried event is stored once.
// Each (subscriber name, event type) is a durable pull consumer that crier creates and never
// deletes: processes subscribing under one name share the work; each name gets every event.
// Events travel as CloudEvents (binary mode by default, structured JSON as an option); plain
// NATS messages published by any client to a bus subject are delivered too. docs/nats.md has
// the details: subjects, consumer names, the CloudEvents mapping, what an acknowledgement
// guarantees.
//
// Link crier::nats (cnats, through pkg-config). The core library never includes nats.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "crier/export.hpp"
#include "crier/open.hpp"
#include "crier/transport.hpp"

namespace crier::nats {

/// Where the stream keeps its messages.
enum class Storage { file, memory };

/// How events are put on the wire (CloudEvents NATS binding).
enum class ContentMode {
  /// Each attribute in a `ce-<name>` header, `content-type` = datacontenttype, the data as
  /// the payload (the binding's current draft; the Go SDK's JetStream binding).
  binary,
  /// The whole event as CloudEvents JSON, `content-type: application/cloudevents+json`
  /// (the released v1.0.2 binding).
  structured,
};

/// The connection's state, as `Options::on_connection` is told it.
enum class ConnectionState { connected, disconnected, reconnected, closed };

/// Text of a ConnectionState: "connected", ...
CRIER_EXPORT const char* to_string(ConnectionState state) noexcept;

/// How to reach the servers, and the stream the bus uses.
struct Options {
  /// Server URLs (`nats://host:port`, `tls://host:port`), tried in turn; the client reconnects
  /// forever, to any of them, with back-off.
  std::vector<std::string> servers{"nats://127.0.0.1:4222"};
  /// The stream every event of the bus goes to. Created if missing; one that exists with other
  /// settings is refused (Errc::invalid_argument naming each difference), never changed.
  std::string stream = "CRIER";
  /// Subjects are `<subject_prefix>.<event type>`. Tokens of [A-Za-z0-9_-].
  std::string subject_prefix = "crier";
  /// The JetStream domain the streams are in (`jetstream { domain: ... }` in the servers'
  /// configuration), for a program connected to a leaf node whose streams are in the hub's
  /// domain, or in another leaf's: JetStream API requests go to `$JS.<domain>.API.>`. Empty:
  /// the JetStream of the servers connected to. One token of [A-Za-z0-9_-].
  std::string domain{};
  int replicas = 1;  ///< 1 to 5: copies of each message, on as many servers
  Storage storage = Storage::file;
  std::chrono::milliseconds max_age{0};  ///< 0: messages are kept whatever their age
  std::int64_t max_bytes = -1;           ///< -1: no size limit
  /// How long the stream remembers a published event id, so that a publish retried within it
  /// (after a lost acknowledgement) is stored once.
  std::chrono::milliseconds duplicate_window{std::chrono::minutes(2)};
  /// How long a consumer's hold on a delivered event lasts without renewal. crier renews it
  /// while the bus holds the event; a process that dies holding events has them delivered to
  /// another process of the same subscriber name after this.
  std::chrono::milliseconds ack_wait{30000};
  /// How many delivered events one consumer holds in memory at most. Pulls are 1024 events at
  /// most; a window of twice that lets the next pull be on its way while the last is handed
  /// out.
  std::size_t window = 2048;
  ContentMode content_mode = ContentMode::binary;
  /// How long publish() keeps retrying (a lost connection, a leader election) before it fails
  /// with Errc::transport_error. Never reports success without the stream's acknowledgement.
  std::chrono::milliseconds publish_timeout{30000};
  /// Publishes sent and not yet acknowledged, at most (over all publishing threads).
  std::size_t max_in_flight = 4096;
  /// Authentication: user and password, a token, or a credentials (JWT + NKey) file.
  std::string user{};
  std::string password{};
  std::string token{};
  std::string credentials_file{};
  /// TLS: on when `tls` is true or a server URL says `tls://`.
  bool tls = false;
  std::string tls_ca_file{};            ///< trusted certificate authorities (PEM)
  std::string tls_cert_file{};          ///< client certificate chain (PEM), for mutual TLS
  std::string tls_key_file{};           ///< its private key (PEM)
  std::string tls_expected_hostname{};  ///< when the servers' certificates name another host
  /// The connection's name, as the servers' monitoring shows it. Empty: "crier".
  std::string connection_name{};
  /// Told of each change of the connection's state, with the server it is connected to (when
  /// disconnected: the one it lost; its password or token shown as `***`), from cnats's
  /// thread; keep it short. Errors and reports hide credentials in server URLs the same way.
  std::function<void(ConnectionState state, const std::string& server)> on_connection{};
};

/// Connects (waiting until a server answers, up to `publish_timeout`), makes sure the streams
/// exist as configured, and returns the transport for `crier::Bus`. Throws crier::Error:
/// Errc::invalid_argument for an option out of range or a stream configured otherwise,
/// Errc::invalid_name for a stream name or subject prefix NATS does not allow,
/// Errc::transport_error when no server answers or JetStream is not enabled.
CRIER_EXPORT std::shared_ptr<Transport> connect(const Options& options);

/// Makes `nats://HOST:PORT[,HOST:PORT...]/STREAM[?prefix=PREFIX&domain=DOMAIN]` (and
/// `tls://...`) openable
/// by crier::open_transport(): the bus of that stream (default CRIER) as its programs made it
/// (replicas, storage, limits and duplicate window read from the server) and subject prefix
/// (default: read from the stream's subjects). It connects as connect() does, waiting at most
/// 5 s for a server, but makes no stream: one that is not there is Error(Errc::not_found),
/// naming the crier buses that are.
CRIER_EXPORT void register_scheme();

}  // namespace crier::nats
