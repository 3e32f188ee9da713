#include "nats/outgoing.hpp"

#include "nats/header_block.hpp"

namespace crier::nats {

Build usual_build() noexcept { return can_make_message_with_block() ? Build::block : Build::cnats_headers; }

natsStatus make_message(const Outgoing& m, const std::string& reply, Build how, std::string& bytes, Msg& out) {
  const std::string_view payload = m.event ? std::string_view(m.event->data) : std::string_view(m.payload);
  natsMsg* raw = nullptr;
  if (how == Build::block && (m.event != nullptr || !m.headers.empty())) {
    start_header_block(bytes);
    if (m.event)
      visit_binary_headers(*m.event, [&](const char* name, const char* value) { add_header_line(bytes, name, value); });
    for (const auto& [name, value] : m.headers) add_header_line(bytes, name, value);
    end_header_block(bytes);
    const std::size_t block_size = bytes.size();
    bytes.append(payload);
    const natsStatus s = make_message_with_block(&raw, m.subject, reply, bytes, block_size);
    out.reset(raw);
    return s;
  }
  natsStatus s = natsMsg_Create(&raw, m.subject.c_str(), reply.empty() ? nullptr : reply.c_str(), payload.data(),
                                static_cast<int>(payload.size()));
  out.reset(raw);
  if (m.event)
    visit_binary_headers(*m.event, [&](const char* name, const char* value) {
      if (s == NATS_OK) s = natsMsgHeader_Add(raw, name, value);
    });
  for (const auto& [name, value] : m.headers)
    if (s == NATS_OK) s = natsMsgHeader_Add(raw, name.c_str(), value.c_str());
  return s;
}

std::size_t wire_size(const Outgoing& m) {
  const std::size_t payload = m.event ? m.event->data.size() : m.payload.size();
  if (m.event == nullptr && m.headers.empty()) return payload;
  std::size_t block = 0;
  auto add = [&](std::string_view name, std::string_view value) { block += header_line_size(name, value); };
  if (m.event) visit_binary_headers(*m.event, add);
  for (const auto& [name, value] : m.headers) add(name, value);
  return header_block_size(block) + payload;
}

}  // namespace crier::nats
