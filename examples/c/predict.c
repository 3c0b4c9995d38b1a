/* predict.c: run an exported symfuse function from C (docs/export.md).
 *
 * Written once for any export: the model's header, named at compile time, maps
 * the generic sf_model_* names to its own functions (SF_MODEL_ALIASES).
 *
 *   symfuse export lenet -o lenet_export            # writes lenet_predict.h, liblenet_predict.so, ...
 *   gcc -O2 predict.c -I lenet_export -DSF_MODEL_HEADER='"lenet_predict.h"' \
 *       -L lenet_export -llenet_predict -Wl,-rpath,'$ORIGIN/lenet_export' -o predict
 *   ./predict [-p PARAMS] [-r REPEAT] INPUT0.bin ... OUTPUT0.bin ...
 *
 * Each INPUTi.bin holds input i's raw bytes (C order); its size is passed as the
 * buffer size, so a file of the wrong size is refused by the library, not here.
 * An export with a run-time batch takes as many rows as the batch input's file holds.
 * Each OUTPUTj.bin receives output j's bytes. -r N times N more calls and prints
 * the median and the fastest, in microseconds. Exit status: 0, or the sf_status. */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *params = NULL;
  int repeat = 0, arg = 1;
  for (; arg + 1 < argc && argv[arg][0] == '-'; arg += 2) {
    if (strcmp(argv[arg], "-p") == 0) params = argv[arg + 1];
    else if (strcmp(argv[arg], "-r") == 0) repeat = atoi(argv[arg + 1]);
  }
  size_t n_in = sf_model_num_inputs(), n_out = sf_model_num_outputs();
  if ((size_t)(argc - arg) != n_in + n_out) {
    fprintf(stderr, "usage: %s [-p PARAMS] [-r REPEAT] %zu input file(s) %zu output file(s)\n", argv[0], n_in, n_out);
    return 2;
  }
  sf_model_handle *h = NULL;
  int rc = sf_model_create(params, &h);
  if (rc != SF_OK) {
    fprintf(stderr, "create failed (%d): %s\n", rc, sf_model_last_error(NULL));
    return rc;
  }
  const void *in[16];
  size_t in_bytes[16], out_bytes[16];
  void *out[16];
  if (n_in > 16 || n_out > 16) return 2;
  for (size_t i = 0; i < n_in; i++) {
    in[i] = read_file(argv[arg + i], &in_bytes[i]);
    if (!in[i]) { fprintf(stderr, "cannot read %s\n", argv[arg + i]); return 2; }
  }
#ifdef SF_MODEL_BATCH_INPUT
  /* a run-time batch: as many rows as the batch input's file holds */
  int64_t batch = (int64_t)(in_bytes[SF_MODEL_BATCH_INPUT] / sf_model_input_bytes(SF_MODEL_BATCH_INPUT));
  for (size_t j = 0; j < n_out; j++) out[j] = malloc((out_bytes[j] = sf_model_output_bytes_for(j, batch)) + 1);
#else
  for (size_t j = 0; j < n_out; j++) out[j] = malloc((out_bytes[j] = sf_model_output_bytes(j)) + 1);
#endif
  rc = sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out);
  if (rc != SF_OK) {
    fprintf(stderr, "run failed (%d): %s\n", rc, sf_model_last_error(h));
    return rc;
  }
  for (size_t j = 0; j < n_out; j++)
    if (!write_file(argv[arg + n_in + j], out[j], out_bytes[j])) { fprintf(stderr, "cannot write output\n"); return 2; }
  if (repeat > 0) {
    double *t = malloc(sizeof(double) * (size_t)repeat);
    for (int r = 0; r < repeat; r++) {
      double t0 = now_us();
      sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out);
      t[r] = now_us() - t0;
    }
    qsort(t, (size_t)repeat, sizeof(double), by_value);
    printf("latency_us median %.1f min %.1f over %d calls\n", t[repeat / 2], t[0], repeat);
    free(t);
  }
  sf_model_destroy(h);
  return 0;
}
