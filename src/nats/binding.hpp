// The CloudEvents NATS protocol binding, on neutral headers (no cnats): binary mode (each
// attribute a `ce-` header, percent-encoded; the data as the payload), structured mode (the
// event as CloudEvents JSON), and plain NATS messages that carry neither.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <crier/envelope.hpp>

namespace crier::nats {

/// A message's headers in the order they came (names as sent; NATS allows repeats).
using Headers = std::vector<std::pair<std::string, std::string>>;
/// Headers as views: of a received message's own storage (valid while it lives), or of
/// Headers (views_of). What the binding reads.
using HeaderViews = std::vector<std::pair<std::string_view, std::string_view>>;
/// Views of `headers`, valid while it lives unchanged.
HeaderViews views_of(const Headers& headers);

/// Percent-encodes what the binding says a header value must not carry as is: space, '"',
/// '%', and every byte outside printable ASCII.
std::string percent_encode(std::string_view value);
/// percent_encode(value) when that takes at most `room` bytes; else the encoding of its start,
/// cut between two UTF-8 characters, and of a note of how long it was, in at most `room` bytes
/// (empty when not even the note fits).
std::string percent_encode_within(std::string_view value, std::size_t room);
/// Undoes percent_encode; throws Error(Errc::invalid_envelope) for a malformed escape,
/// naming `header`.
std::string percent_decode(std::string_view value, std::string_view header);

/// True when percent_encode would change `value`.
bool needs_percent_encoding(std::string_view value) noexcept;

/// Calls `visit(name, value)` for each header of a binary-mode message: the attributes and
/// extensions as `ce-` headers in name order, then content-type. Names and values are
/// NUL-terminated and valid during the call only (what needs no escape is the envelope's own
/// string, not a copy). The payload is `e.data`.
/// Name order, because cnats 3.4.1 files a header added after one whose name it starts under
/// that one when their hashes agree (an extension `ti` under ce-time: nats/header_block.hpp);
/// added in name order, no name comes after one it starts.
template <class Visit>
void visit_binary_headers(const Envelope& e, Visit&& visit) {
  std::string name, escaped;  // built only for extensions and for values that need escapes
  auto add = [&](const char* header, const std::string& value) {
    if (!needs_percent_encoding(value)) {
      visit(header, value.c_str());
      return;
    }
    escaped = percent_encode(value);
    visit(header, escaped.c_str());
  };
  auto add_extension = [&](const auto& extension) {  // there even when empty
    name.assign("ce-").append(extension.first);
    add(name.c_str(), extension.second);
  };
  // The core attributes in name order, each after the extensions named before it (none is
  // named as one: Envelope::validate); an empty core attribute is an absent one.
  const std::pair<std::string_view, const std::string*> core[] = {
      {"dataschema", &e.dataschema}, {"id", &e.id},     {"source", &e.source}, {"specversion", &e.specversion},
      {"subject", &e.subject},       {"time", &e.time}, {"type", &e.type}};
  auto extension = e.extensions.begin();
  for (const auto& [attribute, value] : core) {
    for (; extension != e.extensions.end() && extension->first.compare(attribute) < 0; ++extension)
      add_extension(*extension);
    if (value->empty()) continue;
    name.assign("ce-").append(attribute);
    add(name.c_str(), *value);
  }
  for (; extension != e.extensions.end(); ++extension) add_extension(*extension);
  if (!e.datacontenttype.empty()) visit("content-type", e.datacontenttype.c_str());
}

/// The headers visit_binary_headers visits, copied.
Headers binary_headers(const Envelope& e);

/// How a received message carries its event.
enum class Carried { binary, structured, plain };
/// Detects the mode as the binding says: a content type starting `application/cloudevents`
/// is structured, else a `ce-specversion` header is binary, else the message is plain.
Carried carried_as(const HeaderViews& headers);

/// The first value of header `name`, compared without regard to case; nullptr if absent.
const std::string_view* header(const HeaderViews& headers, std::string_view name);

/// What a plain message's envelope is made of, besides its subject's event type.
struct PlainOrigin {
  std::string event_type{};
  std::string id{};      ///< Nats-Msg-Id, or `<stream>-<sequence>`
  std::string source{};  ///< `nats://<stream>`
  std::string time{};    ///< the stream's timestamp, RFC 3339
};

/// The envelope of a received message, whichever way it carries it. Throws
/// Error(Errc::invalid_envelope) saying what is wrong (a structured body that is not a
/// CloudEvent, a binary header that does not decode, a missing required attribute).
Envelope envelope_of(const HeaderViews& headers, std::string_view payload, const PlainOrigin& plain);

/// The envelope of a plain message, unvalidated: also what the tools show of a message that
/// is not a valid event, so that it can be seen and dead-lettered.
Envelope plain_envelope(const HeaderViews& headers, std::string_view payload, const PlainOrigin& plain);

}  // namespace crier::nats
