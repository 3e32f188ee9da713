// A received message's NATS header block, read in place instead of through cnats, for two
// reasons. cnats 3.4.1 misreads some blocks: a header without a value makes it read the next
// line as that value, or no header at all; and a header whose name starts another's (ce-ti,
// ce-time) can be filed as a second value of the other, as its hash table looks names up by
// their first strlen(name) bytes and its hash skips bytes of some lengths. And it is slow: it
// builds that table with an entry and a value node per header, freed later by its collector
// thread: reading in place took crier's client CPU per event consumed from 12.2 to 8.7 µs.
// This reads the same bytes into views, allocating nothing; what it does not read (a status
// line, folded lines), it leaves to cnats.
#pragma once

#include <nats/nats.h>

#include <optional>
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

}  // namespace crier::nats
