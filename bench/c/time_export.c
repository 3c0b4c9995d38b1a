/* time_export.c: latency of one call of an exported symfuse inference function,
 * timed inside C (bench/study_export.py builds and runs it).
 *
 *   gcc -O2 time_export.c -I EXPORT -DSF_MODEL_HEADER='"NAME.h"' -L EXPORT -lNAME \
 *       -Wl,-rpath,EXPORT -o time_export
 *   ./time_export WARMUP CALLS BUDGET INPUT.bin OUTPUT.bin
 *
 * One input, one output (the zoo's predict functions). OUTPUT.bin receives the
 * output of the last call, for the study to compare with Python's. Prints one
 * JSON line: per-call microseconds (median, p10, p90, min) over up to CALLS
 * calls after WARMUP calls (fewer once BUDGET seconds have passed, timing.h). The buffers are allocated once, as a serving loop would. */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "timing.h"

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s WARMUP CALLS BUDGET INPUT.bin OUTPUT.bin\n", argv[0]);
    return 2;
  }
  int warmup = atoi(argv[1]), calls = atoi(argv[2]);
  double budget_us = atof(argv[3]) * 1e6;
  if (calls < 1 || warmup < 0 || sf_model_num_inputs() != 1 || sf_model_num_outputs() != 1) return 2;
  sf_model_handle *h = NULL;
  int rc = sf_model_create(NULL, &h);
  if (rc != SF_OK) {
    fprintf(stderr, "create failed (%d): %s\n", rc, sf_model_last_error(NULL));
    return rc;
  }
  size_t in_bytes = 0;
  void *in = read_file(argv[4], &in_bytes);
#ifdef SF_MODEL_BATCH_INPUT
  /* an export with a run-time batch: as many rows as the input file holds */
  size_t out_bytes = sf_model_output_bytes_for(0, (int64_t)(in_bytes / sf_model_input_bytes(0)));
#else
  size_t out_bytes = sf_model_output_bytes(0);
#endif
  void *out = malloc(out_bytes);
  if (!in || !out) return 2;
  const void *ins[1] = {in};
  void *outs[1] = {out};
  for (int i = 0; i < warmup; i++)
    if ((rc = sf_model_run(h, ins, &in_bytes, 1, outs, &out_bytes, 1)) != SF_OK) {
      fprintf(stderr, "run failed (%d): %s\n", rc, sf_model_last_error(h));
      return rc;
    }
  double *t = malloc(sizeof(double) * (size_t)calls);
  int n = 0;
  double start = now_us();
  while (n < calls) {
    double t0 = now_us();
    rc |= sf_model_run(h, ins, &in_bytes, 1, outs, &out_bytes, 1);
    t[n++] = now_us() - t0;
    if (n >= MIN_CALLS && now_us() - start > budget_us) break;
  }
  if (rc != SF_OK) return rc;
  if (!write_file(argv[5], out, out_bytes)) return 2;
  print_stats(t, n);
  sf_model_destroy(h);
  return 0;
}
