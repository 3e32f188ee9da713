// The crier command's subcommands: each adds itself, with its options and its action, to the
// application. Actions throw cli::Failure or crier::Error; main() turns them into a message
// and an exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace crier::cli {

void add_status(CLI::App& app);     // crier status BUS
void add_tail(CLI::App& app);       // crier tail BUS
void add_dlq(CLI::App& app);        // crier dlq list|show|redrive|purge BUS
void add_publish(CLI::App& app);    // crier publish BUS
void add_republish(CLI::App& app);  // crier republish BUS ID
void add_replay(CLI::App& app);     // crier replay BUS
void add_dashboard(CLI::App& app);  // crier dashboard BUS

}  // namespace crier::cli
