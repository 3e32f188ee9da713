// Event types with a codec, and scratch directories, for tests of transports.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <crier/crier.hpp>
#include <crier/json.hpp>

namespace test {

struct Job {
  int n = 0;
  std::string note;
};
CRIER_EVENT(Job, "com.example.test.job");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Job, n, note)

/// The `n` of each Job a handler was given, in the order given: a handler calls add().
class SeenJobs {
 public:
  void add(const Job& j) {
    {
      std::lock_guard lock(mu_);
      ns_.push_back(j.n);
    }
    cv_.notify_all();
  }
  /// Blocks until at least `count` were seen.
  void wait_for(std::size_t count) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return ns_.size() >= count; });
  }
  std::vector<int> values() const {
    std::lock_guard lock(mu_);
    return ns_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> ns_;
};

/// A fresh directory under $TMPDIR, removed with everything in it when the object goes.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "crier-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  /// Its own name ("crier-test-XXXXXX"): unique, and a legal NATS stream name.
  std::string name() const { return path_.filename().string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace test
