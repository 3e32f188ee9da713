// The CloudEvents JSON reader (structured mode), fed anything: it either refuses the input with
// crier::Error, or accepts an envelope that is valid, written back without error, and read
// back the same.
#include <crier/envelope.hpp>
#include <crier/error.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {
bool same(const crier::Envelope& a, const crier::Envelope& b) {
  return a.specversion == b.specversion && a.id == b.id && a.source == b.source && a.type == b.type &&
         a.datacontenttype == b.datacontenttype && a.dataschema == b.dataschema && a.subject == b.subject &&
         a.time == b.time && a.extensions == b.extensions && a.data == b.data;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(bytes), size);
  crier::Envelope e;
  try {
    e = crier::Envelope::from_json(text);
  } catch (const crier::Error&) {
    return 0;  // refused, saying why: fine
  }
  e.validate();  // what was accepted is valid (throws, and so crashes the run, otherwise)
  const crier::Envelope again = crier::Envelope::from_json(e.to_json());
  if (!same(e, again)) std::abort();
  return 0;
}
