// crier_bench: every benchmark family registers itself with its same-run baselines.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
