// The dashboard page's files (tools/crier/web), compiled into the program by embed.cmake:
// the server answers only these paths, and no request reaches the file system.
#pragma once

#include <string_view>

namespace crier::cli {

struct Asset {
  std::string_view content_type;
  std::string_view body;
};

/// The asset served at `path` ("/" is index.html); nullptr for any other path.
const Asset* find_asset(std::string_view path);

}  // namespace crier::cli
