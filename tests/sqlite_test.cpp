// The SQLite store itself: files it refuses, restarts, failures it survives, the outbox.
#include <gtest/gtest.h>

#include <crier/sqlite.hpp>
#include <sqlite3.h>

#include "durable_events.hpp"
#include "test_events.hpp"

using namespace test;
