/* <name>_run_device under the fake driver (tests/runtime/test_export_cuda.py), whose device
 * pointers are host addresses: the same call as run on "device" buffers, and its bad use. Prints
 * "case status" lines; writes output 0 of run and of run_device to the two files given. */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int save(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  int ok = f && fwrite(p, 1, n, f) == n;
  return (f && fclose(f) == 0) && ok;
}

int main(int argc, char **argv) {
  if (argc != 3 || sf_model_num_inputs() > 8 || sf_model_num_outputs() > 8) return 2;
  sf_model_handle *h = NULL;
  int rc = sf_model_create(NULL, &h);
  if (rc) { fprintf(stderr, "create %d %s\n", rc, sf_model_last_error(NULL)); return rc; }
  size_t n_in = sf_model_num_inputs(), n_out = sf_model_num_outputs();
  const void *in[8];
  void *out[8], *dev_out[8];
  size_t in_bytes[8], out_bytes[8];
  unsigned long long din[8], dout[8];
  for (size_t i = 0; i < n_in; i++) {
    unsigned char *p = malloc(in_bytes[i] = sf_model_input_bytes(i));
    for (size_t b = 0; b < in_bytes[i]; b++) p[b] = (unsigned char)(b % 4 == 3 ? 0x3e : b * 7);   /* floats near 0.1-0.5 */
    in[i] = p;
    din[i] = (unsigned long long)(uintptr_t)p;
  }
  for (size_t j = 0; j < n_out; j++) {
    out[j] = calloc(1, out_bytes[j] = sf_model_output_bytes(j));
    dev_out[j] = calloc(1, out_bytes[j]);
    dout[j] = (unsigned long long)(uintptr_t)dev_out[j];
  }
  printf("run %d\n", sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out));
  printf("run_device %d\n", sf_model_run_device(h, din, n_in, dout, n_out));
  printf("run_device_count %d\n", sf_model_run_device(h, din, n_in + 1, dout, n_out));
  printf("run_device_null_outputs %d\n", sf_model_run_device(h, din, n_in, NULL, n_out));
  unsigned long long zero = din[0];
  din[0] = 0;
  printf("run_device_zero_input %d\n", sf_model_run_device(h, din, n_in, dout, n_out));
  din[0] = zero;
  int same = save(argv[1], out[0], out_bytes[0]) && save(argv[2], dev_out[0], out_bytes[0]);
  sf_model_destroy(h);
  return same ? 0 : 3;
}
