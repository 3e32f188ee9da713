// Symbol visibility for the crier library: the library is built with hidden visibility
// and exports only what carries CRIER_EXPORT.
#pragma once

#if defined(CRIER_SHARED) && defined(CRIER_BUILDING)
#define CRIER_EXPORT __attribute__((visibility("default")))
#elif defined(CRIER_SHARED)
#define CRIER_EXPORT
#else
#define CRIER_EXPORT __attribute__((visibility("default")))
#endif
