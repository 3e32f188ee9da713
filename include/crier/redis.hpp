// crier on Redis Streams: the Redis that most teams already run.
//
//   crier::Bus bus{crier::redis::connect({.url = "redis://127.0.0.1:6379"})};
//   // the rest of the program is unchanged
//
// Every event type is a stream (`<prefix>:<type>`); every subscriber name a consumer group
// on it, created on its first subscribe at its start position; each process a consumer of
// that group. publish() returns once Redis replied (as durable as the server's appendfsync
// makes it); publishes are pipelined, and one cut off by a lost connection is stored once
// (Options::dedup_window guards against an event published twice as well). Events travel
// as CloudEvents, one stream field per attribute (`ce_id`, `ce_type`, ..., `content-type`,
// `data`), which any Redis client reads and writes. docs/redis.md has the details: keys, the
// field mapping, retries and dead letters, what an acknowledged publish guarantees.
//
// Link crier::redis (hiredis, through pkg-config). The core library never includes hiredis.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "crier/export.hpp"
#include "crier/open.hpp"
#include "crier/transport.hpp"

namespace crier::redis {

/// How to reach the server, and the keys the bus uses.
struct Options {
  /// `redis://[[user]:password@]host[:port][/db]` or `unix:///path/to/redis.sock[?db=N]`;
  /// an IPv6 host in brackets (`redis://[::1]:6379`).
  /// TLS (`rediss://`) is refused: Debian 12's hiredis 0.14 has no TLS.
  std::string url = "redis://127.0.0.1:6379";
  /// Every key crier makes starts `<prefix>:`. 1 to 64 characters of [A-Za-z0-9_-].
  std::string prefix = "crier";
  /// ACL user and password (AUTH), when the URL does not carry them. A password without a
  /// user authenticates as the default user.
  std::string user{};
  std::string password{};
  /// How long a consumer's hold on a delivered entry lasts without renewal. crier renews it
  /// (XCLAIM ... JUSTID) while the bus holds the event; entries of a process that died are
  /// claimed by another consumer of the group (XAUTOCLAIM) after this.
  std::chrono::milliseconds visibility_timeout{30000};
  /// How many delivered events one consumer holds at most. Reads are 256 entries at most; a
  /// window of more lets the next read be on its way while the last is handed out.
  std::size_t window = 1024;
  /// A publish cut off by a lost connection is stored once either way: crier looks for the
  /// events whose reply was lost among the streams' newest entries before it sends them
  /// again. With a window, each write also goes through a Lua guard that remembers its event
  /// id that long, so that the same event published again (an outbox relay after a crash, a
  /// CloudEvent replayed by a tool) is stored once too; it costs about half the publish rate
  /// (bench/README.md). 0: no guard, plain XADD.
  std::chrono::milliseconds dedup_window{0};
  /// Approximate cap on each event stream's length (XADD MAXLEN ~); 0: no cap. Entries are
  /// trimmed oldest first whether or not every group read them: see docs/redis.md.
  std::uint64_t max_len = 0;
  /// How long a call keeps retrying (a lost connection, a server LOADING its data after a
  /// restart) before it fails with Errc::transport_error. Never reports a publish stored
  /// without Redis's reply.
  std::chrono::milliseconds timeout{30000};
  /// Publishes sent and not yet answered, at most (over all publishing threads).
  std::size_t max_in_flight = 4096;
  /// Replicas that must have a publish's events before publish() returns (Redis `WAIT` after
  /// the writes). Redis replicates asynchronously: with 0 (the default) an event is
  /// acknowledged once the primary has it, and one the replicas did not have yet is lost if a
  /// replica takes over (Sentinel, a managed failover). With 1 or more it survives that. A
  /// publish whose events that many replicas do not confirm within `timeout` fails with
  /// Errc::transport_error saying how many did (the events are on the primary: publishing them
  /// again may store them twice unless `dedup_window` guards). Each publish call waits one
  /// round trip more; publish_batch() waits once for the batch.
  int replicas = 0;
  /// connect() refuses a server that evicts any key when it reaches its memory limit
  /// (`maxmemory` set and an `allkeys-*` `maxmemory-policy`, as a Redis used as a cache often
  /// is): it could delete a stream holding events no subscriber has handled, silently. True
  /// connects all the same. Read once, at connect (`INFO memory`); `noeviction` and the
  /// `volatile-*` policies (crier's streams never expire) are accepted.
  bool allow_eviction = false;
};

/// Connects (waiting up to `timeout` for the server) and returns the transport for
/// `crier::Bus`. Throws crier::Error: Errc::invalid_argument for an option out of range or a
/// URL it cannot use, Errc::invalid_name for a prefix Redis keys of crier cannot carry,
/// Errc::transport_error when the server does not answer or refuses the credentials.
CRIER_EXPORT std::shared_ptr<Transport> connect(const Options& options);

/// The ACL rules a bus's Redis user needs for key prefix `prefix`, for `ACL SETUSER <user> on
/// ><password> <rules>` or a `user` line of redis.conf: its keys (`~<prefix>:*`) and the
/// commands crier sends, no others. The crier tool needs the same. A command or key the
/// server refuses to a bus is said with them (Errc::transport_error).
CRIER_EXPORT std::string acl_rules(std::string_view prefix);

/// Makes `redis://[[user]:password@]HOST[:PORT][/DB][?prefix=PREFIX]` and
/// `unix:///PATH[?db=N&prefix=PREFIX]` openable by crier::open_transport(): the bus of that
/// prefix (default "crier"). It connects as connect() does, waiting at most 5 s and with
/// allow_eviction (to show a bus as it is), but makes no bus: a prefix where nothing was
/// published or subscribed is Error(Errc::not_found), naming the prefixes of the buses that
/// are there.
CRIER_EXPORT void register_scheme();

}  // namespace crier::redis
