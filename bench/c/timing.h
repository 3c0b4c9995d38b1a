/* timing.h: what the C and C++ timing drivers of bench/study_export.py share,
 * so that both report the same statistics the same way. */
#ifndef BENCH_TIMING_H
#define BENCH_TIMING_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* timed calls stop at CALLS, or once BUDGET seconds have passed and at least MIN_CALLS were
 * made: a loaded machine then costs fewer calls, not a longer study */
#define MIN_CALLS 30

/* nearest-rank percentile of sorted values: the same rule as the study's Python side */
static double percentile(const double *sorted, int n, double q) {
  int i = (int)(q * (n - 1) + 0.5);
  return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

static void print_stats(double *t, int n) {
  qsort(t, (size_t)n, sizeof(double), by_value);
  printf("{\"calls\": %d, \"median_us\": %.3f, \"p10_us\": %.3f, \"p90_us\": %.3f, \"min_us\": %.3f}\n", n,
         percentile(t, n, 0.5), percentile(t, n, 0.1), percentile(t, n, 0.9), t[0]);
}

static void *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc(n > 0 ? (size_t)n : 1);
  *size = buf ? fread(buf, 1, (size_t)n, f) : 0;
  fclose(f);
  return buf;
}

static int write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  int ok = f && fwrite(data, 1, size, f) == size;
  if (f) ok = fclose(f) == 0 && ok;
  return ok;
}

#endif
