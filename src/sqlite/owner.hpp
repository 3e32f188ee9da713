// Who holds a claim: a consumer id that names its process, so that consumers on the same host
// can tell a claim whose process died (kill -9) and take it over at once, instead of waiting
// for its lease to run out.
#pragma once

#include <string>
#include <string_view>

namespace crier::sqlite {

/// A new consumer id: "<pid>.<process start time>.<pid namespace>.<uuid>".
std::string new_owner_id();
/// False when the id names a process of this host and pid namespace that is gone (its pid is
/// free, or reused by a process that started at another time). Ids it cannot read, and those of
/// processes in another pid namespace (another container), count as alive.
bool owner_alive(std::string_view owner);

}  // namespace crier::sqlite
