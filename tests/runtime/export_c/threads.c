/* Handles used at once from several threads (tests/runtime/test_export.py): each
 * thread owns a handle and runs the same input 20 times; every result must equal
 * the one computed alone first. Prints "same" or "differs". */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
static void *input;
static size_t in_bytes, out_bytes;

static int run_once(sf_model_handle *h, void *out) {
  const void *in[] = { input };
  void *outs[] = { out };
  return sf_model_run(h, in, &in_bytes, 1, outs, &out_bytes, 1);
}

static void *worker(void *ref) {
  sf_model_handle *h;
  if (sf_model_create(NULL, &h) != SF_OK) return (void *)1;
  void *out = malloc(out_bytes);
  long bad = 0;
  for (int i = 0; i < 20; i++) bad += run_once(h, out) != SF_OK || memcmp(out, ref, out_bytes) != 0;
  free(out);
  sf_model_destroy(h);
  return (void *)bad;
}

int main(void) {
  in_bytes = sf_model_input_bytes(0);
  out_bytes = sf_model_output_bytes(0);
  input = malloc(in_bytes);
  for (size_t i = 0; i < in_bytes / sizeof(float); i++) ((float *)input)[i] = (float)(i % 97) / 97.0f;
  sf_model_handle *h;
  if (sf_model_create(NULL, &h) != SF_OK) return 1;
  void *ref = malloc(out_bytes);
  if (run_once(h, ref) != SF_OK) return 1;
  pthread_t t[THREADS];
  for (int k = 0; k < THREADS; k++) pthread_create(&t[k], NULL, worker, ref);
  long bad = 0;
  for (int k = 0; k < THREADS; k++) {
    void *r;
    pthread_join(t[k], &r);
    bad += (long)r;
  }
  sf_model_destroy(h);
  puts(bad ? "differs" : "same");
  return 0;
}
