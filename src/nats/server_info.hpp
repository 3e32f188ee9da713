// The INFO a NATS server sends first to whoever connects, read on a connection of crier's
// own: cnats 3.4.1 keeps none of what tells whether the server runs JetStream.
#pragma once

#include <chrono>
#include <string_view>

#include <nlohmann/json.hpp>

namespace crier::nats {

/// The JSON of the INFO line the server at `url` (`nats://[user[:password]@]host:port`, an IPv6
/// host in brackets) sends on connecting, read within about `timeout`; null when it cannot be
/// read (nothing answers, not NATS, ...). Sends nothing: the server drops the connection later.
nlohmann::json read_server_info(std::string_view url, std::chrono::milliseconds timeout);

}  // namespace crier::nats
