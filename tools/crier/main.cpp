// crier: look inside a bus and repair it from the command line. Every subcommand works on
// the inspection interface and the dead-letter queue of the transport the first argument
// names, so that it works alike on every transport.
#include <crier/nats.hpp>
#include <crier/redis.hpp>
#include <crier/sqlite.hpp>

#include <cstdio>

#include "cli.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  crier::sqlite::register_scheme();
  crier::nats::register_scheme();
  crier::redis::register_scheme();

  CLI::App app{"crier: see, tail, replay and repair a crier bus"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "crier " CRIER_VERSION);
  app.footer(
      "BUS is a SQLite store file (orders.db) or a transport URL\n"
      "(nats://HOST:PORT/STREAM[?domain=DOMAIN], redis://HOST:PORT[?prefix=PREFIX]).\n"
      "Exit codes: 0 done; 1 the bus refused or failed; 2 usage (or not confirmed); 3 not found;\n"
      "130 stopped by Ctrl-C (what was done is reported).");
  crier::cli::add_status(app);
  crier::cli::add_tail(app);
  crier::cli::add_dlq(app);
  crier::cli::add_publish(app);
  crier::cli::add_republish(app);
  crier::cli::add_replay(app);
  crier::cli::add_dashboard(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? crier::cli::ok : crier::cli::usage;
  } catch (const crier::cli::Failure& e) {
    std::fprintf(stderr, "crier: %s\n", e.what());
    return e.code;
  } catch (const crier::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());  // "crier: <code>: <what and where>"
    switch (e.code()) {
      case crier::Errc::invalid_argument:
      case crier::Errc::invalid_name:
        return crier::cli::usage;
      case crier::Errc::not_found:
        return crier::cli::not_found;
      default:
        return crier::cli::failure;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crier: %s\n", e.what());
    return crier::cli::failure;
  }
  return crier::cli::ok;
}
