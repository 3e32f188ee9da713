// The JSON codec, complete: include this where an event type declares its JSON form, with
// NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Type, members...) or to_json/from_json of its own. The
// durable transports' headers (crier/sqlite.hpp) include it. A program that uses only the
// in-process bus need not: its events are never encoded unless they are dead-lettered or a
// handler asks for the envelope, and then only types declaring a JSON form carry data.
#pragma once

#include <nlohmann/json.hpp>

#include "crier/codec.hpp"
