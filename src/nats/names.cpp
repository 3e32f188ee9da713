#include "nats/names.hpp"

#include <crier/error.hpp>
#include <crier/event.hpp>

#include <array>
#include <charconv>

namespace crier::nats {

namespace {

constexpr std::size_t kMaxToken = 64;
// nats-server keeps a consumer in a directory named after it: a file name's length at most.
constexpr std::size_t kMaxDurable = 255;

bool is_token(std::string_view s) noexcept {
  if (s.empty() || s.size() > kMaxToken) return false;
  for (char c : s)
    if (!crier::detail::is_name_char(c)) return false;
  return true;
}

void escape_into(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '_')
      out += "_u";
    else if (c == '.')
      out += "_d";
    else
      out += c;
  }
}

// Undoes escape_into up to the "_s" separator (or the end); nullopt on anything else.
std::optional<std::string> unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '_') {
      out += s[i];
      continue;
    }
    if (i + 1 == s.size()) return std::nullopt;
    const char e = s[++i];
    if (e == 'u')
      out += '_';
    else if (e == 'd')
      out += '.';
    else
      return std::nullopt;
  }
  return out;
}

}  // namespace

bool is_valid_stream_name(std::string_view name) noexcept { return is_token(name); }
bool is_valid_subject_prefix(std::string_view prefix) noexcept { return is_token(prefix); }
bool is_valid_domain(std::string_view domain) noexcept { return is_token(domain); }

ServerAddress split_server_url(std::string_view url) {
  if (const auto scheme = url.find("://"); scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
  if (const auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  url = url.substr(0, url.find('/'));
  ServerAddress a{.host = url};
  if (url.starts_with('[')) {
    const auto close = url.find(']');
    if (close == std::string_view::npos) return {.problem = "an IPv6 address lacks its ']'"};
    a.host = url.substr(1, close - 1);
    const std::string_view after = url.substr(close + 1);
    if (!after.empty() && after.front() != ':') return {.problem = "']' is not followed by :PORT"};
    if (!after.empty()) a.port = after.substr(1);
  } else if (const auto colon = url.rfind(':'); colon != std::string_view::npos) {
    a.host = url.substr(0, colon);
    a.port = url.substr(colon + 1);
    if (a.host.find(':') != std::string_view::npos) return {.problem = "an IPv6 address goes in brackets: [::1]:4222"};
  }
  if (a.host.empty()) return {.problem = "it names no host"};
  return a;
}

std::string server_url_problem(std::string_view url) {
  const ServerAddress a = split_server_url(url);
  if (!a.problem.empty()) return a.problem;
  if (const auto port = a.port) {
    int n = 0;
    const auto [end, ec] = std::from_chars(port->data(), port->data() + port->size(), n);
    if (port->empty() || ec != std::errc() || end != port->data() + port->size() || n < 1 || n > 65535)
      return "port '" + std::string(*port) + "' is not 1 to 65535";
  }
  return {};
}

std::string subject_of(std::string_view prefix, std::string_view event_type) {
  std::string s;
  s.reserve(prefix.size() + 1 + event_type.size());
  return s.append(prefix).append(1, '.').append(event_type);
}

std::optional<std::string> type_of_subject(std::string_view prefix, std::string_view subject) {
  if (subject.size() <= prefix.size() + 1 || subject.substr(0, prefix.size()) != prefix ||
      subject[prefix.size()] != '.')
    return std::nullopt;
  std::string type(subject.substr(prefix.size() + 1));
  if (!is_valid_event_type(type)) return std::nullopt;
  return type;
}

std::string durable_of(std::string_view subscriber, std::string_view event_type) {
  std::string d;
  escape_into(d, subscriber);
  d += "_s";
  escape_into(d, event_type);
  if (d.size() > kMaxDurable)
    throw Error(Errc::invalid_name, "subscriber " + crier::detail::quoted_name(subscriber) + " of " +
                                        crier::detail::quoted_name(event_type) + ": the NATS consumer name would be " +
                                        std::to_string(d.size()) + " characters long, more than nats-server allows (" +
                                        std::to_string(kMaxDurable) + "); use a shorter name");
  return d;
}

std::optional<std::pair<std::string, std::string>> parse_durable(std::string_view durable) {
  // The separator is the first "_s" that does not finish an escape ("_u", "_d").
  std::size_t i = 0;
  for (; i + 1 < durable.size(); ++i) {
    if (durable[i] != '_') continue;
    if (durable[i + 1] == 's') break;
    ++i;  // skip the escaped character
  }
  if (i + 1 >= durable.size()) return std::nullopt;
  auto subscriber = unescape(durable.substr(0, i));
  auto type = unescape(durable.substr(i + 2));
  if (!subscriber || !type || !is_valid_subscriber_name(*subscriber) || !is_valid_event_type(*type))
    return std::nullopt;
  return std::make_pair(std::move(*subscriber), std::move(*type));
}

std::optional<Delivery> parse_delivery(std::string_view reply) {
  // Every delivered message passes through here: its tokens are views into a fixed array
  // (the forms have 9 and 12 tokens; what the fields below need lies within the first 12).
  constexpr std::size_t kKept = 12;
  std::array<std::string_view, kKept> t;
  std::size_t tokens = 0;
  for (std::size_t from = 0;; ++tokens) {
    const auto dot = reply.find('.', from);
    if (tokens < kKept)
      t[tokens] = reply.substr(from, dot == std::string_view::npos ? std::string_view::npos : dot - from);
    if (dot == std::string_view::npos) {
      ++tokens;
      break;
    }
    from = dot + 1;
  }
  if (tokens < 9 || t[0] != "$JS" || t[1] != "ACK") return std::nullopt;
  const std::size_t base = tokens >= 11 ? 4 : 2;  // the newer form: domain, account hash
  auto num = [](std::string_view s, auto& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && r.ec == std::errc{} && r.ptr == s.data() + s.size();
  };
  Delivery d;
  if (!num(t[base + 2], d.count) || !num(t[base + 3], d.seq) || !num(t[base + 5], d.ns)) return std::nullopt;
  return d;
}

}  // namespace crier::nats
