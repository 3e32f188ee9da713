#include "redis/fields.hpp"

#include <charconv>
#include <limits>

#include <crier/error.hpp>
#include <nlohmann/json.hpp>

namespace crier::redis {

namespace {

constexpr std::string_view kPrefix = "ce_";

bool parse_u64(std::string_view text, std::uint64_t& out) {
  return !text.empty() && std::from_chars(text.data(), text.data() + text.size(), out).ptr == text.data() + text.size();
}

}  // namespace

Fields fields_of(const Envelope& e) {
  Fields f;
  f.reserve(9 + e.extensions.size());
  visit_fields(e, [&](std::string_view name, std::string_view value) { f.emplace_back(name, value); });
  return f;
}

const std::string* field(const Fields& fields, std::string_view name) {
  for (const auto& [n, v] : fields)
    if (n == name) return &v;
  return nullptr;
}

namespace {

// The attribute field `name` holds: nullptr for an extension (ce_<other>) and for a field
// that carries no attribute.
std::string Envelope::*attribute_of(std::string_view name) {
  if (name == "data") return &Envelope::data;
  if (name == "content-type") return &Envelope::datacontenttype;
  if (name.rfind(kPrefix, 0) != 0) return nullptr;
  const std::string_view attr = name.substr(kPrefix.size());
  if (attr == "specversion") return &Envelope::specversion;
  if (attr == "id") return &Envelope::id;
  if (attr == "source") return &Envelope::source;
  if (attr == "type") return &Envelope::type;
  if (attr == "time") return &Envelope::time;
  if (attr == "subject") return &Envelope::subject;
  if (attr == "dataschema") return &Envelope::dataschema;
  return nullptr;
}

}  // namespace

Envelope take_envelope(Fields& fields) {
  if (!field(fields, "ce_specversion"))
    throw Error(Errc::invalid_envelope,
                "not a CloudEvent: it has no ce_specversion field (fields: ce_id, ce_source, "
                "ce_type, ..., content-type, data)");
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::string& name = fields[i].first;
    for (std::size_t j = 0; j < i; ++j)
      if (fields[j].first == name) throw Error(Errc::invalid_envelope, "field '" + name + "' appears twice");
    if (name == "ce_datacontenttype")
      throw Error(Errc::invalid_envelope, "ce_datacontenttype is carried as the field 'content-type'");
    if (name == "ce_data") throw Error(Errc::invalid_envelope, "the data is the field 'data', not 'ce_data'");
  }
  // Other fields are not CloudEvents attributes: ignored, as a binding ignores other headers.
  Envelope e;
  for (auto& [name, value] : fields) {
    if (auto attribute = attribute_of(name))
      (e.*attribute).swap(value);
    else if (name.rfind(kPrefix, 0) == 0)
      e.extensions.emplace(name.substr(kPrefix.size()), std::move(value));
  }
  try {
    e.validate();
  } catch (...) {
    for (auto& [name, value] : fields) {  // as they were
      if (auto attribute = attribute_of(name))
        (e.*attribute).swap(value);
      else if (name.rfind(kPrefix, 0) == 0)
        value = std::move(e.extensions[name.substr(kPrefix.size())]);
    }
    throw;
  }
  return e;
}

Envelope envelope_of(const Fields& fields) {
  Fields copy = fields;
  return take_envelope(copy);
}

Envelope readable_envelope(const Fields& fields, std::string_view stream_key, std::string_view entry_id,
                           std::string_view type) {
  Envelope e;
  auto take = [&](std::string_view name, std::string& into) {
    if (const std::string* v = field(fields, name)) into = *v;
  };
  take("ce_id", e.id);
  take("ce_source", e.source);
  take("ce_time", e.time);
  take("ce_subject", e.subject);
  take("content-type", e.datacontenttype);
  if (e.id.empty()) e.id = std::string(stream_key) + "-" + std::string(entry_id);
  if (e.source.empty()) e.source = "redis://" + std::string(stream_key);
  e.type = std::string(type);
  if (const std::string* d = field(fields, "data")) {
    e.data = *d;
  } else {
    nlohmann::json all = nlohmann::json::object();
    for (const auto& [n, v] : fields)
      if (!all.contains(n)) all[n] = v;
    e.data = all.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    e.datacontenttype = "application/json";
  }
  return e;
}

std::optional<EntryId> parse_entry_id(std::string_view text) {
  EntryId id;
  const auto dash = text.find('-');
  if (!parse_u64(text.substr(0, dash), id.ms)) return std::nullopt;
  if (dash != std::string_view::npos && !parse_u64(text.substr(dash + 1), id.seq)) return std::nullopt;
  return id;
}

bool id_less(std::string_view a, std::string_view b) {
  const auto x = parse_entry_id(a), y = parse_entry_id(b);
  return x && y && *x < *y;
}

std::string id_before(const EntryId& id) {
  if (id.seq > 0) return std::to_string(id.ms) + "-" + std::to_string(id.seq - 1);
  if (id.ms > 0) return std::to_string(id.ms - 1) + "-" + std::to_string(std::numeric_limits<std::uint64_t>::max());
  return "0-0";
}

}  // namespace crier::redis
