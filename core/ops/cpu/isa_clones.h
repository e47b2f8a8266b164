// KOLO_ISA_CLONES: compile a hot f32 loop for AVX-512, AVX2 and baseline x86-64 and let the loader pick the
// widest the CPU runs (GCC target_clones, resolved once through an ifunc). kolo is built for baseline x86-64
// so that one binary runs anywhere; at that level GCC leaves loops with float selects (ReLU masks) scalar and
// double accumulators two lanes wide. Other compilers and architectures get the plain function.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KOLO_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KOLO_ISA_CLONES
#endif
