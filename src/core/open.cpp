#include "crier/open.hpp"

#include <map>

#include "common/mutex.hpp"
#include "crier/error.hpp"

namespace crier {

namespace {

struct Registry {
  detail::Mutex mu;
  std::map<std::string, TransportOpener> openers CRIER_GUARDED_BY(mu);
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_transport(const std::string& scheme, TransportOpener opener) {
  auto& r = registry();
  detail::MutexLock lock(r.mu);
  r.openers[scheme] = std::move(opener);
}

std::vector<std::string> registered_schemes() {
  auto& r = registry();
  detail::MutexLock lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [scheme, opener] : r.openers) out.push_back(scheme);
  return out;
}

std::shared_ptr<Transport> open_transport(const std::string& target, const OpenOptions& options) {
  const auto sep = target.find("://");
  const std::string scheme = sep == std::string::npos ? "file" : target.substr(0, sep);
  TransportOpener opener;
  {
    auto& r = registry();
    detail::MutexLock lock(r.mu);
    if (auto it = r.openers.find(scheme); it != r.openers.end()) opener = it->second;
  }
  if (!opener) {
    std::string known;
    for (const auto& s : registered_schemes()) known += (known.empty() ? "" : ", ") + s;
    throw Error(Errc::invalid_argument, "'" + target + "': no transport opens " +
                                            (scheme == "file" ? std::string("files") : scheme + ":// URLs") +
                                            " (registered: " + (known.empty() ? "none" : known) + ")");
  }
  return opener(target, options);
}

}  // namespace crier
