// Lock rules the compiler checks: Clang's thread-safety annotations (as leveldb's
// port/thread_annotations.h), and a mutex, a scoped lock and a condition variable that carry
// them. Under GCC the annotations expand to nothing; the Clang build in CI compiles with
// -Wthread-safety -Werror, so a member read without its mutex, or a function called without
// the lock it requires, does not build.
//
// Waits take the mutex, not a predicate: the analysis does not see into lambdas, so a wait
// loop is written out where the lock is visibly held:
//   MutexLock lock(mu_);
//   while (!ready_) cv_.wait(mu_);
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define CRIER_TSA(x) __attribute__((x))
#else
#define CRIER_TSA(x)
#endif

#define CRIER_CAPABILITY(x) CRIER_TSA(capability(x))
#define CRIER_SCOPED_CAPABILITY CRIER_TSA(scoped_lockable)
/// The member is read and written only with the mutex held.
#define CRIER_GUARDED_BY(x) CRIER_TSA(guarded_by(x))
/// The pointee is read and written only with the mutex held.
#define CRIER_PT_GUARDED_BY(x) CRIER_TSA(pt_guarded_by(x))
/// The caller holds the mutex.
#define CRIER_REQUIRES(...) CRIER_TSA(requires_capability(__VA_ARGS__))
/// The caller does not hold the mutex (the function takes it).
#define CRIER_EXCLUDES(...) CRIER_TSA(locks_excluded(__VA_ARGS__))
#define CRIER_ACQUIRE(...) CRIER_TSA(acquire_capability(__VA_ARGS__))
#define CRIER_RELEASE(...) CRIER_TSA(release_capability(__VA_ARGS__))
#define CRIER_TRY_ACQUIRE(...) CRIER_TSA(try_acquire_capability(__VA_ARGS__))
/// Opts a function out of the analysis; say why beside it.
#define CRIER_NO_THREAD_SAFETY_ANALYSIS CRIER_TSA(no_thread_safety_analysis)

namespace crier::detail {

/// std::mutex, as a capability the analysis tracks.
class CRIER_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() CRIER_ACQUIRE() { m_.lock(); }
  void unlock() CRIER_RELEASE() { m_.unlock(); }
  bool try_lock() CRIER_TRY_ACQUIRE(true) { return m_.try_lock(); }

 private:
  friend class CondVar;
  std::mutex m_;
};

/// Holds a Mutex for its scope; unlock() and lock() let go of it and take it again inside.
class CRIER_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) CRIER_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() CRIER_RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() CRIER_RELEASE() {
    mu_.unlock();
    held_ = false;
  }
  void lock() CRIER_ACQUIRE() {
    mu_.lock();
    held_ = true;
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

/// std::condition_variable over a Mutex. Every wait may wake spuriously: wait in a loop.
class CondVar {
 public:
  /// Waits until notified; the caller holds `mu`, and holds it again on return.
  void wait(Mutex& mu) CRIER_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.m_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  /// As wait(), until `deadline` at most; false when the deadline passed.
  template <class Clock, class Duration>
  bool wait_until(Mutex& mu, std::chrono::time_point<Clock, Duration> deadline) CRIER_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.m_, std::adopt_lock);
    const bool notified = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return notified;
  }
  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace crier::detail
