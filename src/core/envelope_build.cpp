#include "envelope_build.hpp"

namespace crier::detail {

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
