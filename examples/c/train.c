/* train.c: run an exported training step from C and save the trained parameters
 * (docs/export.md). Built like predict.c, against a `symfuse export --train` directory:
 *
 *   gcc -O2 train.c -I dir -DSF_MODEL_HEADER='"lenet_train.h"' -L dir -llenet_train -Wl,-rpath,dir -o train
 *   ./train [-p PARAMS] -s STEPS -o TRAINED.params INPUT0.bin ...
 *
 * Runs STEPS steps on the same inputs (a real program would read a new batch for
 * each), prints each step's scalar float32 outputs (loss, accuracy, ...), and writes
 * the parameters with save_params: a file Python reads with sf.export's read_params
 * and any handle of the same model loads. */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(int argc, char **argv) {
  const char *params = NULL, *save = NULL;
  int steps = 1, arg = 1;
  for (; arg + 1 < argc && argv[arg][0] == '-'; arg += 2) {
    if (strcmp(argv[arg], "-p") == 0) params = argv[arg + 1];
    else if (strcmp(argv[arg], "-s") == 0) steps = atoi(argv[arg + 1]);
    else if (strcmp(argv[arg], "-o") == 0) save = argv[arg + 1];
  }
  size_t n_in = sf_model_num_inputs(), n_out = sf_model_num_outputs();
  if ((size_t)(argc - arg) != n_in || n_in > 16 || n_out > 16) {
    fprintf(stderr, "usage: %s [-p PARAMS] -s STEPS -o OUT.params %zu input file(s)\n", argv[0], n_in);
    return 2;
  }
  sf_model_handle *h = NULL;
  int rc = sf_model_create(params, &h);
  if (rc != SF_OK) {
    fprintf(stderr, "create failed (%d): %s\n", rc, sf_model_last_error(NULL));
    return rc;
  }
  const void *in[16];
  void *out[16];
  size_t in_bytes[16], out_bytes[16];
  for (size_t i = 0; i < n_in; i++)
    if (!(in[i] = read_file(argv[arg + i], &in_bytes[i]))) { fprintf(stderr, "cannot read %s\n", argv[arg + i]); return 2; }
#ifdef SF_MODEL_BATCH_INPUT
  /* a run-time batch: as many rows as the batch input's file holds */
  int64_t batch = (int64_t)(in_bytes[SF_MODEL_BATCH_INPUT] / sf_model_input_bytes(SF_MODEL_BATCH_INPUT));
  for (size_t j = 0; j < n_out; j++) out[j] = calloc(1, (out_bytes[j] = sf_model_output_bytes_for(j, batch)) + 1);
#else
  for (size_t j = 0; j < n_out; j++) out[j] = calloc(1, (out_bytes[j] = sf_model_output_bytes(j)) + 1);
#endif
  for (int s = 0; s < steps; s++) {
    rc = sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out);
    if (rc != SF_OK) {
      fprintf(stderr, "step %d failed (%d): %s\n", s, rc, sf_model_last_error(h));
      return rc;
    }
    printf("step %d", s);
    for (size_t j = 0; j < n_out; j++)
      if (sf_model_output_dtype(j) == SF_DTYPE_FLOAT32 && sf_model_output_ndim(j) == 0)
        printf(" %s=%.9g", sf_model_output_name(j), *(const float *)out[j]);
    printf("\n");
  }
  if (save && (rc = sf_model_save_params(h, save)) != SF_OK) {
    fprintf(stderr, "save failed (%d): %s\n", rc, sf_model_last_error(h));
    return rc;
  }
  sf_model_destroy(h);
  return 0;
}
