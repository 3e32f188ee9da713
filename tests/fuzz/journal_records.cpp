// The journal record scanner (what recovery reads from a killed process's journal file), fed
// any bytes: it finds only whole, intact records, and each one encodes back to itself.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "journal.hpp"

using crier::sqlite::RecordView;

namespace {
bool same(const RecordView& a, const RecordView& b) {
  return a.jseq == b.jseq && a.id == b.id && a.type == b.type && a.source == b.source && a.time == b.time &&
         a.datacontenttype == b.datacontenttype && a.dataschema == b.dataschema && a.subject == b.subject &&
         a.extensions == b.extensions && a.data == b.data;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(bytes), size);
  RecordView first;
  (void)crier::sqlite::decode_record(file, first, false);  // unverified: must not read out of bounds either
  for (const RecordView& r : crier::sqlite::scan_records(file)) {
    std::string encoded;
    crier::sqlite::encode_record(r, encoded);
    RecordView back;
    if (crier::sqlite::decode_record(encoded, back, true) == 0 || !same(r, back)) std::abort();
  }
  return 0;
}
