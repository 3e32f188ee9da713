// What the crier command's subcommands share: opening the bus they name, the exit codes,
// terminal facts, and reading times and positions as operators write them.
#pragma once

#include <crier/crier.hpp>
#include <crier/open.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace crier::cli {

/// The exit codes, as `crier --help` documents them.
enum Exit : int {
  ok = 0,
  failure = 1,    ///< the bus refused or failed (an error from crier)
  usage = 2,      ///< the command line is wrong
  not_found = 3,  ///< the store, a dead letter or a subscriber named does not exist
};

/// An error the command reports and exits with: what happened, and its exit code.
struct Failure : std::runtime_error {
  Failure(Exit code, const std::string& what) : std::runtime_error(what), code(code) {}
  Exit code;
};

/// Opens the bus `target` names (a store file, or a URL of a registered transport). A file
/// that does not exist is Failure(not_found): the tools never create a store.
std::shared_ptr<Transport> open_bus(const std::string& target, bool read_only);

/// True when stdout (fd 1) or stdin (fd 0) is a terminal.
bool is_terminal(int fd);
/// The terminal's width in columns; 0 when stdout is not a terminal (lines are not cut).
int terminal_width();

/// Asks "<question> [y/N]" on the terminal; true for yes. Without a terminal it refuses:
/// a script says --yes.
bool confirm(const std::string& question);

/// A time as an operator writes it: RFC 3339, or relative to now ("-10m", "-2h", "-30s",
/// "-1d"). Throws Failure(usage) saying what is accepted.
Timestamp parse_when(const std::string& text);

/// "3.2 s", "4 min", "2 h": an age for people.
std::string age_text(std::chrono::milliseconds age);

}  // namespace crier::cli
