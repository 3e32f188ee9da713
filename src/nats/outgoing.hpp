// A message crier sends to the stream, and how it is made into a cnats message.
#pragma once

#include <nats/nats.h>

#include <memory>
#include <string>
#include <string_view>

#include "nats/binding.hpp"

namespace crier::nats {

struct MsgDeleter {
  void operator()(natsMsg* m) const noexcept { natsMsg_Destroy(m); }
};
using Msg = std::unique_ptr<natsMsg, MsgDeleter>;

/// A message to publish to the stream.
struct Outgoing {
  std::string subject{};
  /// Nats-Msg-Id among them, for de-duplication. Added after the event's: none may be the
  /// start of another header's name (cnats 3.4.1 would file it under that one when it builds
  /// the message with natsMsgHeader_Add).
  Headers headers{};
  std::string payload{};
  /// Binary mode: the event whose attributes are sent as headers before `headers`, and whose
  /// data is the payload (`payload` stays empty). Read when sent: it outlives the publish.
  const Envelope* event = nullptr;
};

/// How a message is made: its header block written at once (make_message_with_block), or
/// header by header through cnats's natsMsgHeader_Add (any cnats; about four allocations per
/// header).
enum class Build { block, cnats_headers };

/// Build::block where the cnats linked allows it (can_make_message_with_block).
Build usual_build() noexcept;

/// Makes `m`'s message, its acknowledgement asked for on `reply` (empty: none), into `out`.
/// `bytes` is a buffer the caller keeps (Build::block), so that many messages allocate it
/// once. The headers either way: the event's (visit_binary_headers), then m.headers, in that
/// order; a message without any is made without a block either way.
natsStatus make_message(const Outgoing& m, const std::string& reply, Build how, std::string& bytes, Msg& out);

/// The bytes of `m` that a server's max_payload bounds: its header block and its payload,
/// as make_message makes them either way.
std::size_t wire_size(const Outgoing& m);

}  // namespace crier::nats
