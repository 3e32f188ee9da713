// The threads that run async subscribers. A subscriber is queued here when it has events
// and fewer runs than its concurrency; a run handles batches until its queue is empty, so
// the pool's lock is taken per run, not per event.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

namespace crier::detail {

class BusCore;
class SubscriberBase;

/// A FIFO of subscribers ready to run: a ring that grows when full and never shrinks, so that
/// scheduling allocates nothing once the bus has warmed up.
class ReadyQueue {
 public:
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  void push(SubscriberBase* sub);
  SubscriberBase* pop() noexcept;

 private:
  std::vector<SubscriberBase*> ring_ = std::vector<SubscriberBase*>(64);
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

class WorkerPool {
 public:
  WorkerPool(BusCore& core, unsigned threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Queues a run of `sub`. The caller has counted it in sub.runners and sub.refs.
  void submit(SubscriberBase* sub);
  /// Lets the runs under way finish, abandons queued ones and joins the threads.
  void stop_and_join();

 private:
  void loop();
  void run(SubscriberBase* sub);

  BusCore& core_;
  std::mutex mu_;
  std::condition_variable cv_;
  ReadyQueue ready_;                   // guarded by mu_
  unsigned idle_ = 0;                  // guarded by mu_
  bool stop_ = false;                  // guarded by mu_
  std::atomic<std::size_t> ready_count_{0};
  std::vector<std::thread> threads_;
};

}  // namespace crier::detail
