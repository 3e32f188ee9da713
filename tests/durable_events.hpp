// Event types with a codec, and scratch directories, for tests of transports.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <crier/crier.hpp>

namespace test {

struct Job {
  int n = 0;
  std::string note;
};
CRIER_EVENT(Job, "com.example.test.job");
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Job, n, note)

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

 private:
  std::filesystem::path path_;
};

}  // namespace test
