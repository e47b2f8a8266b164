/* The floor under an in-place host allreduce of n bytes: one read and one write of the buffer, `x *= a`, with
 * as many processes at once as ranks share the machine (run it under mpirun -np N, or N copies by hand).
 * Prints the median of 7 passes for 64 MiB and 256 MiB; an allreduce must also move data between the
 * ranks, so it cannot beat this.   memory_floor [MiB ...] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  const int defaults[] = {64, 256};
  const int count = argc > 1 ? argc - 1 : 2;
  for (int s = 0; s < count; ++s) {
    const size_t mib = argc > 1 ? (size_t)atoi(argv[s + 1]) : (size_t)defaults[s];
    const size_t n = mib << 18; /* floats */
    float* x = malloc(n * sizeof(float));
    if (!x) return 1;
    for (size_t i = 0; i < n; ++i) x[i] = 1.0f;
    double t[7];
    for (int r = 0; r < 7; ++r) {
      const double t0 = now();
      for (size_t i = 0; i < n; ++i) x[i] *= 1.0000001f;
      t[r] = 1e3 * (now() - t0);
    }
    qsort(t, 7, sizeof t[0], by_value);
    printf("%zu MiB in-place read+write: median %.2f ms (min %.2f, x[0] %.3f)\n", mib, t[3], t[0], x[0]);
    free(x);
  }
  return 0;
}
