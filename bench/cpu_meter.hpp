// The CPU a client (this process) and a server spend per event. On two cores they share the
// machine, so what each costs bounds the rate: a client that costs more CPU per event takes
// it from the server, and the other way round. Counters client_us and server_us, and
// client_switches: the client's threads' context switches per event (each a wake-up that
// costs CPU of its own).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

namespace bench {

class CpuMeter {
 public:
  explicit CpuMeter(pid_t server) : server_pid_(server) {}

  /// Counts from here to stop(); start/stop pairs add up (around a timed region that pauses).
  void start() {
    client_at_ = client_seconds();
    server_at_ = server_seconds();
    switches_at_ = switches();
  }
  void stop() {
    client_ += client_seconds() - client_at_;
    server_ += server_seconds() - server_at_;
    switches_ += switches() - switches_at_;
  }

  /// Sets client_us and server_us (microseconds of CPU per event) and client_switches, over
  /// `events`.
  void report(benchmark::State& state, double events) const {
    if (events <= 0) return;
    state.counters["client_us"] = client_ * 1e6 / events;
    state.counters["server_us"] = server_ * 1e6 / events;
    state.counters["client_switches"] = switches_ / events;
  }

 private:
  static double client_seconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
  }
  // User and system time from /proc/<pid>/stat (fields 14 and 15, in clock ticks: 10 ms,
  // a percent of a one-second run). The command name, field 2, may hold spaces: read past ')'.
  double server_seconds() const {
    std::ifstream in("/proc/" + std::to_string(server_pid_) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream fields(text.substr(close + 2));
    std::string skip;
    for (int field = 3; field < 14; ++field) fields >> skip;
    double utime = 0, stime = 0;
    fields >> utime >> stime;
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

  static double switches() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_nvcsw + u.ru_nivcsw);
  }
  double switches_ = 0, switches_at_ = 0;
  pid_t server_pid_;
  double client_ = 0, server_ = 0, client_at_ = 0, server_at_ = 0;
};

}  // namespace bench
