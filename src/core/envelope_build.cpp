#include "envelope_build.hpp"

#include <unistd.h>

#include <cstring>

namespace crier::detail {

std::string default_source() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  return "/crier/" + std::string(host) + "/" + std::to_string(getpid());
}

Envelope build_envelope(const PublishMeta& meta, std::string_view source, std::string_view type) {
  Envelope e;
  e.id = meta.id.to_string();
  e.source = std::string(source);
  e.type = std::string(type);
  e.time = format_time(meta.time);
  e.extensions["correlationid"] = meta.correlation_id.to_string();
  if (!meta.causation_id.is_nil()) e.extensions["causationid"] = meta.causation_id.to_string();
  if (const Attributes* a = meta.attributes.get()) {
    e.subject = a->subject;
    e.dataschema = a->dataschema;
    if (!a->partition_key.empty()) e.extensions["partitionkey"] = a->partition_key;
    for (const auto& [k, v] : a->extensions) e.extensions[k] = v;
  }
  return e;
}

}  // namespace crier::detail

namespace crier::detail {

namespace {
Uuid uuid_or_nil(std::string_view text) noexcept {
  try {
    return Uuid::parse(text);
  } catch (...) {
    return Uuid{};
  }
}
}  // namespace

PublishMeta meta_of_stored(std::shared_ptr<const Envelope> stored, Timestamp time) {
  PublishMeta meta;
  const Envelope& e = *stored;
  meta.id = uuid_or_nil(e.id);
  meta.time = time;
  // Null when the publisher set none, as for an event published in this process (and one
  // allocation fewer for each such event delivered).
  std::shared_ptr<Attributes> attributes;
  auto set = [&]() -> Attributes& {
    if (!attributes) attributes = std::make_shared<Attributes>();
    return *attributes;
  };
  if (!e.subject.empty()) set().subject = e.subject;
  if (!e.dataschema.empty()) set().dataschema = e.dataschema;
  for (const auto& [name, value] : e.extensions) {
    if (name == "correlationid")
      meta.correlation_id = uuid_or_nil(value);
    else if (name == "causationid")
      meta.causation_id = uuid_or_nil(value);
    else if (name == "partitionkey")
      set().partition_key = value;
    else
      set().extensions.emplace_back(name, value);
  }
  meta.attributes = std::move(attributes);
  meta.stored = std::move(stored);
  return meta;
}

}  // namespace crier::detail

namespace crier {

Envelope new_envelope(std::string_view type, std::string data, std::string_view content_type,
                      const Attributes* attributes) {
  static const std::string source = detail::default_source();
  detail::PublishMeta meta;
  meta.id = Uuid::v7();
  meta.time = std::chrono::system_clock::now();
  meta.correlation_id = meta.id;
  if (attributes) meta.attributes = std::make_shared<const Attributes>(*attributes);
  Envelope e = detail::build_envelope(meta, source, type);
  e.datacontenttype = std::string(content_type);
  e.data = std::move(data);
  return e;
}

}  // namespace crier
