// A Redis stream entry as the transport reads one, fed anything: the input is split at NUL
// bytes into field names and values (name, value, name, value, ...), and also read as an
// entry id. Reading the fields refuses with crier::Error or accepts an envelope that is valid
// and whose own fields carry it back unchanged; what the tools show of any entry is made
// without throwing; an entry id that parses prints back to one that parses the same.
#include <crier/envelope.hpp>
#include <crier/error.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "redis/fields.hpp"

using namespace crier::redis;

namespace {

bool same(const crier::Envelope& a, const crier::Envelope& b) {
  return a.specversion == b.specversion && a.id == b.id && a.source == b.source && a.type == b.type &&
         a.datacontenttype == b.datacontenttype && a.dataschema == b.dataschema && a.subject == b.subject &&
         a.time == b.time && a.extensions == b.extensions && a.data == b.data;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Fields fields;
  std::string name;
  bool have_name = false;
  for (std::size_t from = 0; from <= text.size();) {
    const auto end = std::min(text.find('\0', from), text.size());
    const std::string part(text.substr(from, end - from));
    if (have_name)
      fields.emplace_back(std::move(name), part);
    else
      name = part;
    have_name = !have_name;
    from = end + 1;
  }
  try {
    const crier::Envelope e = envelope_of(fields);
    e.validate();  // what was accepted is valid
    if (!same(envelope_of(fields_of(e)), e)) std::abort();
  } catch (const crier::Error&) {
  }
  Fields taken = fields;  // the consumer's way: values moved out, left as they were when refused
  try {
    if (!same(take_envelope(taken), envelope_of(fields))) std::abort();
  } catch (const crier::Error&) {
    if (taken != fields) std::abort();
  }
  (void)readable_envelope(fields, "p:com.example.x", "1-0", "com.example.x");
  if (const auto id = parse_entry_id(text)) {
    if (parse_entry_id(id->text()) != id) std::abort();
    (void)id_before(*id);
  }
  return 0;
}
