# Sourced by the other scripts: makes sure the Debian 12 packages crier needs are installed.
# As root it installs what is missing with apt-get; otherwise it prints the exact command
# and stops.

# Everything a build with tests, benchmarks and examples needs.
CRIER_PACKAGES=(
  g++ cmake make pkg-config clang-format
  nlohmann-json3-dev libsqlite3-dev libnats-dev nats-server libhiredis-dev redis-server redis-tools
  libcli11-dev libcpp-httplib-dev googletest libgtest-dev libgmock-dev
  libbenchmark-dev libboost-dev libsigc++-3.0-dev libconcurrentqueue-dev
  chromium help2man openssl
)
# Node.js and npm run the NATS interop test's other side: Debian's, unless the machine has
# them already (from another source, whose npm Debian's package would conflict with).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  CRIER_PACKAGES+=(nodejs npm)
fi

crier_ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -eq 0 ]]; then
    echo "crier: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || { echo "crier: apt-get update failed" >&2; return 1; }
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
      { echo "crier: apt-get install ${missing[*]} failed" >&2; return 1; }
  else
    echo "crier: missing Debian packages. Run, as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    return 1
  fi
}

crier_jobs() { nproc 2>/dev/null || echo 2; }
