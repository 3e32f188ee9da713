// Opening a bus's transport by name, as the tools do (`crier status orders.db`,
// `crier tail nats://10.0.0.1:4222/ORDERS`): each transport registers its URL scheme, and
// a tool needs nothing transport-specific beyond calling those registrations.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crier/export.hpp"
#include "crier/transport.hpp"

namespace crier {

/// How a tool opens a transport.
struct OpenOptions {
  /// Only to look: the transport writes nothing, where it can promise that (a SQLite store
  /// is opened read-only; a server's transport reads its engine's state either way).
  bool read_only = false;
};

/// Opens the transport a target names; throws crier::Error saying why it cannot.
using TransportOpener = std::function<std::shared_ptr<Transport>(const std::string& target, const OpenOptions&)>;

/// Makes targets `<scheme>://...` openable by open_transport(); the scheme "file" stands for
/// every target without a scheme (a path). A second registration of a scheme replaces it.
CRIER_EXPORT void register_transport(const std::string& scheme, TransportOpener opener);

/// The schemes registered, sorted.
CRIER_EXPORT std::vector<std::string> registered_schemes();

/// The transport `target` names: `<scheme>://...` for a registered scheme, else a file path.
/// Throws Error(Errc::invalid_argument) for a scheme no transport registered (naming those
/// that are), Error(Errc::not_found) when the bus it names is not there (a NATS stream, a
/// Redis prefix where nothing was published or subscribed: the openers make none), and
/// whatever else the transport throws when it cannot open the target.
CRIER_EXPORT std::shared_ptr<Transport> open_transport(const std::string& target, const OpenOptions& options = {});

/// `target` as it may be shown or logged: in each URL of it (a comma-separated list too), a
/// password or token in the user information is replaced by `***`
/// (`nats://bob:***@10.0.0.1:4222/ORDERS`, `redis://***@host:6379`). A target without `://`
/// (a file path) is returned as it is.
CRIER_EXPORT std::string redacted_target(std::string_view target);

}  // namespace crier
