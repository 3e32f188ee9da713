#include "nats/header_block.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

namespace crier::nats {

namespace {

constexpr std::string_view kVersion = "NATS/1.0";
constexpr std::string_view kVersionLine = "NATS/1.0\r\n";
constexpr std::string_view kCrlf = "\r\n";

// The most distinct names read in place: each is compared with those before it, so a message
// with thousands (anyone may publish one) goes to cnats's hash table instead.
constexpr std::size_t kMostNames = 64;

// isspace() in the C locale, which cnats trims with.
bool is_space(char c) noexcept { return c == ' ' || (c >= '\t' && c <= '\r'); }

}  // namespace

// Where cnats 3.0 to 3.13 keep it (natsMsg_create, read at their tags): a received message
// is one allocation holding "subject\0" and "reply\0" when it has one, then the header block
// and a NUL when there is one, then the data. Read only from those versions, and only when
// a reply lies right after the subject as that layout has it.
std::optional<std::string_view> header_block_of(natsMsg* m) {
  static const bool layout_known = [] {
    const uint32_t v = nats_GetVersionNumber();
    return v >= 0x030000 && v < 0x030E00;
  }();
  const char* subject = natsMsg_GetSubject(m);
  const char* reply = natsMsg_GetReply(m);
  const char* data = natsMsg_GetData(m);
  if (!layout_known || subject == nullptr || data == nullptr) return std::nullopt;
  const char* after_subject = subject + std::strlen(subject) + 1;
  if (reply != nullptr && reply != after_subject) return std::nullopt;
  const char* block = reply != nullptr ? reply + std::strlen(reply) + 1 : after_subject;
  if (data == block) return std::string_view{};
  if (std::less<>()(data, block) || data[-1] != '\0') return std::nullopt;
  return std::string_view(block, static_cast<std::size_t>(data - 1 - block));
}

bool parse_header_block(std::string_view block, HeaderViews& out) {
  out.clear();
  // A status ("NATS/1.0 404 No Messages") is cnats's to read: it makes a Status header of it.
  if (block.size() < kVersionLine.size() + kCrlf.size() || !block.starts_with(kVersionLine) ||
      !block.ends_with("\r\n\r\n"))
    return false;
  std::string_view rest = block.substr(kVersionLine.size(), block.size() - kVersionLine.size() - kCrlf.size());
  while (!rest.empty()) {
    const std::size_t end = rest.find(kCrlf);  // rest ends with CRLF: always found
    const std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + kCrlf.size());
    // A folded line, an empty one, a NUL (cnats wrote its own terminators into a block it
    // read): cnats's.
    if (line.empty() || is_space(line.front()) || line.find('\0') != std::string_view::npos) return false;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && is_space(value.front())) value.remove_prefix(1);
    while (!value.empty() && is_space(value.back())) value.remove_suffix(1);
    const std::string_view name = line.substr(0, colon);
    if (std::any_of(out.begin(), out.end(), [&](const auto& h) { return h.first == name; })) continue;
    if (out.size() == kMostNames) return false;
    out.emplace_back(name, value);
  }
  return true;
}

int status_of_block(std::string_view block) {
  if (!block.starts_with(kVersion)) return 0;
  std::string_view line = block.substr(kVersion.size(), block.find(kCrlf) - kVersion.size());
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  // The first three characters, as cnats reads them (atoi of "404"); a description may follow.
  int status = 0;
  for (std::size_t i = 0; i < std::min<std::size_t>(3, line.size()) && line[i] >= '0' && line[i] <= '9'; ++i)
    status = status * 10 + (line[i] - '0');
  return status;
}

}  // namespace crier::nats
