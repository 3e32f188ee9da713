#!/usr/bin/env bash
# How much longer the README's quick start (memory bus) takes to compile than a program of
# the same size using only the standard library headers crier's public headers include.
# Prints both times (the best of ROUNDS, compiled alternately, so that both see the same
# machine) and their ratio. A figure, not a test: it fails only when a file does not compile.
#
#   bench/compile_ratio.sh [CXX] [ROUNDS]      (defaults: c++, 5)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cxx=${1:-${CXX:-c++}}
rounds=${2:-5}
flags=(-std=c++20 -O2 -c -o /dev/null -I "$here/../include")

compile_ns() {
  local start end
  start=$(date +%s%N)
  "$cxx" "${flags[@]}" "$1"
  end=$(date +%s%N)
  echo $((end - start))
}

best_quick=""
best_std=""
for ((i = 0; i < rounds; i++)); do
  q=$(compile_ns "$here/compile/quickstart.cpp")
  s=$(compile_ns "$here/compile/std_only.cpp")
  [[ -z $best_quick || $q -lt $best_quick ]] && best_quick=$q
  [[ -z $best_std || $s -lt $best_std ]] && best_std=$s
done
lines=$("$cxx" -std=c++20 -E -I "$here/../include" "$here/compile/quickstart.cpp" | wc -l)
json=$("$cxx" -std=c++20 -E -I "$here/../include" "$here/compile/quickstart.cpp" | grep -c '^# 1 ".*nlohmann/json.hpp"' || true)
awk -v q="$best_quick" -v s="$best_std" -v l="$lines" -v j="$json" 'BEGIN {
  printf "quick start (memory bus): %.2f s, %d preprocessed lines, nlohmann/json.hpp included: %s\n", q / 1e9, l, (j > 0 ? "yes" : "no")
  printf "standard library only:    %.2f s\n", s / 1e9
  printf "compile ratio: %.2fx\n", q / s
}'
