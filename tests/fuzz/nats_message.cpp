// A NATS message as the transport reads one, fed anything: the input is split into header
// lines ("name: value", up to an empty line) and the payload, and also read as a delivery's
// reply subject, as JetStream's answer to a publish (which never throws, is stored only
// with a sequence, and whose shortcut reads what a JSON parser reads) and as consumer info
// (counts read as counts or refused with crier::Error). Reading either refuses with
// crier::Error or accepts an envelope that is valid and that crier's own binary-mode headers
// carry back unchanged; percent-encoding any value decodes back to it. Read as a header
// block, what is read lies in the input, names each once, and written out again reads the
// same.
#include <crier/envelope.hpp>
#include <crier/error.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "nats/binding.hpp"
#include "nats/header_block.hpp"
#include "nats/names.hpp"
#include "nats/publish_answer.hpp"

using namespace crier::nats;

namespace {

bool same(const crier::Envelope& a, const crier::Envelope& b) {
  return a.specversion == b.specversion && a.id == b.id && a.source == b.source && a.type == b.type &&
         a.datacontenttype == b.datacontenttype && a.dataschema == b.dataschema && a.subject == b.subject &&
         a.time == b.time && a.extensions == b.extensions && a.data == b.data;
}

Headers headers_of(std::string_view& text) {
  Headers h;
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    h.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return h;
}

// Reads the input as a header block; what it reads, written as a block again, reads the same.
void read_header_block(std::string_view input) {
  HeaderViews views;
  if (!parse_header_block(input, views)) return;
  std::string again = "NATS/1.0\r\n";
  for (std::size_t i = 0; i < views.size(); ++i) {
    const auto& [name, value] = views[i];
    if (name.data() < input.data() || value.data() + value.size() > input.data() + input.size()) std::abort();
    for (std::size_t j = 0; j < i; ++j)
      if (views[j].first == name) std::abort();
    again.append(name).append(": ").append(value).append("\r\n");
  }
  again += "\r\n";
  HeaderViews reread;
  if (!parse_header_block(again, reread) || reread != views) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(bytes), size);
  (void)parse_delivery(input);
  read_header_block(input);
  if (const PublishAnswer a = read_publish_answer(0, input); a.kind != PublishAnswer::Kind::stored && a.problem.empty())
    std::abort();
  if (percent_decode(percent_encode(input), "fuzz") != input) std::abort();
  if (needs_percent_encoding(input) != (percent_encode(input) != input)) std::abort();
  const auto info = nlohmann::json::parse(input, nullptr, false);
  if (const auto seq = read_plain_ack(input)) {  // what the shortcut reads, a JSON parser reads the same
    const auto s = info.find("seq");
    if (s == info.end() || *s != *seq || info.contains("error")) std::abort();
  }
  try {
    (void)(count_member(info, "num_pending") + count_member(member(info, "delivered"), "stream_seq"));
    for (const auto& [subject, count] : member(member(info, "state"), "subjects").items())
      (void)count_of(count, subject);
  } catch (const crier::Error&) {
  }
  (void)text_member(member(info, "ack_floor"), "last_active");

  std::string_view rest = input;
  const Headers owned = headers_of(rest);
  const HeaderViews headers = views_of(owned);
  const PlainOrigin plain{"com.example.fuzz", "ORDERS-1", "nats://ORDERS", "2026-12-03T06:00:00Z"};
  crier::Envelope e;
  try {
    e = envelope_of(headers, rest, plain);
  } catch (const crier::Error&) {
    (void)plain_envelope(headers, rest, plain);  // what the tools show of it instead
    return 0;
  }
  e.validate();  // what was accepted is valid (throws, and so crashes the run, otherwise)
  if (!same(e, envelope_of(views_of(binary_headers(e)), e.data, plain))) std::abort();
  return 0;
}
