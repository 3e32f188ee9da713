// The threads that run async subscribers. A subscriber is queued here when it has events
// and fewer runs than its concurrency; a run handles batches until its queue is empty, so
// the pool's lock is taken per run, not per event.
//
// A subscriber that spends its batches failing moves to one background thread at the
// lowest CPU priority until a batch goes well: it still makes progress with spare CPU, but
// it can no longer take the cores that publishers and healthy subscribers need.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "common/mutex.hpp"

namespace crier::detail {

class CoreImpl;
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
  WorkerPool(CoreImpl& core, unsigned threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Where a run is queued: the pool's threads, or the low-priority background thread.
  enum class Tier { normal, background };

  /// Queues a run of `sub`. The caller has counted it in sub.runners and sub.refs.
  void submit(SubscriberBase* sub, Tier tier = Tier::normal);
  /// Lets the runs under way finish, abandons queued ones and joins the threads.
  void stop_and_join();

 private:
  struct Queue {
    CondVar cv;
    ReadyQueue ready;   // guarded by the pool's mu_ (which the analysis cannot name from here)
    unsigned idle = 0;  // guarded by the pool's mu_
    std::atomic<std::size_t> count{0};
  };

  Queue& queue(Tier tier) noexcept { return tier == Tier::normal ? normal_ : background_; }
  void loop(Tier tier);
  void run(SubscriberBase* sub, Tier tier);

  CoreImpl& core_;
  Mutex mu_;
  Queue normal_;
  Queue background_;
  bool stop_ CRIER_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace crier::detail
