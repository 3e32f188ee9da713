// A received message's NATS header block, read in place instead of through cnats, for two
// reasons. cnats 3.4.1 misreads some blocks: a header without a value makes it read the next
// line as that value, or no header at all; and a header whose name starts another's (ce-ti,
// ce-time) can be filed as a second value of the other, as its hash table looks names up by
// their first strlen(name) bytes and its hash skips bytes of some lengths. And it is slow: it
// builds that table with an entry and a value node per header, freed later by its collector
// thread: reading in place took crier's client CPU per event consumed from 12.2 to 8.7 µs.
// This reads the same bytes into views, allocating nothing; what it does not read (a status
// line, folded lines), it leaves to cnats.
// Blocks to send are written here too, for the same cost: cnats's natsMsgHeader_Add builds
// that table for a message only to write it out as such a block (about four allocations per
// header); a block written at once goes out as cnats sends a received message on.
#pragma once

#include <nats/nats.h>

#include <optional>
#include <string>
#include <string_view>

#include "nats/binding.hpp"

namespace crier::nats {

/// The header block of a message cnats received ("NATS/1.0...\r\n\r\n"), in the message's
/// own storage: empty when it has none; nullopt when it cannot be found safely (a cnats
/// version whose layout is unknown), for cnats to read.
/// Once cnats has read the message's headers the block holds the NULs it wrote into it, and
/// parse_header_block refuses it: read it in place first.
std::optional<std::string_view> header_block_of(natsMsg* m);

/// Reads a header block as sent ("NATS/1.0\r\n", "Name: value\r\n" lines, then "\r\n") into
/// `out` (cleared first): each name (case kept, all up to the colon) with its first value,
/// trimmed of spaces at both ends (perhaps empty), in the order they came.
/// Returns false, `out` then unspecified, for a block it leaves to cnats: one with a status
/// after "NATS/1.0" (404, 408, 503 ...), a folded line (starting with a space), an empty
/// line, a line without a name or a colon, more than 64 names, or a block not framed as above.
bool parse_header_block(std::string_view block, HeaderViews& out);

/// The status a header block's first line carries ("NATS/1.0 404 No Messages": 404), as cnats
/// reads it; 0 when it carries none.
int status_of_block(std::string_view block);

/// Starts a header block to send in `out` (cleared first): "NATS/1.0\r\n".
void start_header_block(std::string& out);
/// Appends the line "name: value\r\n". A CR or LF in the value is written as a space, as
/// cnats writes it: it would end the value there and start a line of its own.
void add_header_line(std::string& out, std::string_view name, std::string_view value);
/// Ends the block with its empty line.
void end_header_block(std::string& out);
/// The bytes add_header_line appends for `name` and `value`.
constexpr std::size_t header_line_size(std::string_view name, std::string_view value) noexcept {
  return name.size() + value.size() + 4;  // ": " and "\r\n"
}
/// The bytes of a whole block whose lines take `lines` bytes.
std::size_t header_block_size(std::size_t lines) noexcept;

/// Whether make_message_with_block works with the cnats linked: 3.0 to 3.13, whose internal
/// natsMsg_create (exported, the same there) builds a message whose header block is sent as
/// it is. Otherwise messages are built with natsMsgHeader_Add.
bool can_make_message_with_block() noexcept;
/// A message to `subject`, with reply subject `reply` (empty: none), made of `bytes`: a header
/// block (its first `block_size` bytes, as start/add/end_header_block write one) and then the
/// data. One allocation, as cnats makes a message it received. Only when
/// can_make_message_with_block() (NATS_ERR otherwise).
natsStatus make_message_with_block(natsMsg** out, std::string_view subject, std::string_view reply,
                                   std::string_view bytes, std::size_t block_size);

}  // namespace crier::nats
