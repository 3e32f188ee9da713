// A directory a test owns: made fresh under $TMPDIR, removed with everything in it when the
// object goes, also when the constructor of what holds it throws (a server that would not
// start leaves nothing behind).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace test {

class ScratchDir {
 public:
  /// Makes `<prefix>-XXXXXX` under the temporary directory.
  explicit ScratchDir(const std::string& prefix = "crier-test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  /// Its own name ("crier-test-XXXXXX"): unique, and a legal NATS stream name.
  std::string name() const { return path_.filename().string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace test
