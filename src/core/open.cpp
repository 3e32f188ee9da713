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
    // Appended one by one: g++ 12 warns (-Wrestrict, a false positive) on `"'" + std::string&&`.
    std::string what = "'";
    what += redacted_target(target);
    what += "': no transport opens ";
    what += scheme == "file" ? std::string("files") : scheme + ":// URLs";
    what += " (registered: " + (known.empty() ? std::string("none") : known) + ")";
    throw Error(Errc::invalid_argument, what);
  }
  return opener(target, options);
}

std::string redacted_target(std::string_view target) {
  if (target.find("://") == std::string_view::npos) return std::string(target);
  std::string out;
  for (std::size_t from = 0; from <= target.size();) {
    const std::size_t comma = std::min(target.find(',', from), target.size());
    std::string_view url = target.substr(from, comma - from);
    const std::size_t scheme = url.find("://");
    const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
    const std::size_t end = std::min(url.find_first_of("/?#", start), url.size());  // the authority's
    const std::size_t at = url.substr(0, end).rfind('@');
    if (from > 0) out += ',';
    if (at == std::string_view::npos || at < start) {
      out += url;
    } else {
      const std::size_t colon = url.substr(start, at - start).find(':');
      out += url.substr(0, colon == std::string_view::npos ? start : start + colon + 1);
      out += "***";
      out += url.substr(at);
    }
    from = comma + 1;
  }
  return out;
}

}  // namespace crier
