// What a NATS server sends first to whoever connects, read on a connection of crier's own:
// cnats 3.4.1 keeps none of its INFO that tells whether the server runs JetStream, and loses
// the words with which it refuses a client.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace crier::nats {

/// The JSON of the INFO line the server at `url` (`nats://[user[:password]@]host:port`, an IPv6
/// host in brackets) sends on connecting, read within about `timeout`; null when it cannot be
/// read (nothing answers, not NATS, ...). Sends nothing: the server drops the connection later.
nlohmann::json read_server_info(std::string_view url, std::chrono::milliseconds timeout);

/// What the server at `url` says right after its INFO to a client it will not serve (its
/// `-ERR`, without the quotes: "maximum connections exceeded"), read within about
/// `timeout`; empty when it says nothing more (it serves clients), or cannot be reached.
/// cnats 3.4.1 loses those words: it says "Expected 'PONG', got ''".
std::string read_server_refusal(std::string_view url, std::chrono::milliseconds timeout);

}  // namespace crier::nats
