// Names for crier's threads, as `top -H`, gdb, perf and /proc/<pid>/task/*/comm show them:
// among a program's own threads, crier's say what they are.
#pragma once

#include <pthread.h>

#include <string_view>

namespace crier::detail {

/// Names the calling thread. Linux keeps 15 characters: crier's names fit. Never fails
/// visibly: a thread without its name works the same.
inline void name_this_thread(std::string_view name) noexcept {
#if defined(__linux__)
  char buf[16] = {};
  name.copy(buf, sizeof buf - 1);
  (void)pthread_setname_np(pthread_self(), buf);
#else
  (void)name;
#endif
}

}  // namespace crier::detail
