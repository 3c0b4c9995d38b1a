/* An export with a run-time batch used from C (tests/runtime/test_export_batch.py).
 * Prints one line per case, "<case> <status> <message>", then whether handles run
 * at once from threads, each with its own batch size, give the results each gives
 * alone ("threads same" or "threads differs"). */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
static size_t row;                 /* bytes of one row of the batch input */

static float *rows(int64_t n) {
  float *x = malloc((size_t)n * row + 1);
  for (size_t i = 0; i < (size_t)n * row / sizeof(float); i++) x[i] = (float)(i % 89) / 89.0f;
  return x;
}

static int run(sf_model_handle *h, const void *x, size_t x_bytes, void *out, size_t out_bytes) {
  const void *in[] = { x };
  void *outs[] = { out };
  return sf_model_run(h, in, &x_bytes, 1, outs, &out_bytes, 1);
}

static void report(const char *what, sf_model_handle *h, int rc) {
  printf("%s %d %s\n", what, rc, rc ? sf_model_last_error(h) : "ok");
}

struct job { int64_t n; void *ref; long bad; };

static void *worker(void *arg) {
  struct job *j = arg;
  sf_model_handle *h;
  if (sf_model_create(NULL, &h) != SF_OK) { j->bad = 1; return NULL; }
  size_t ob = sf_model_output_bytes_for(0, j->n);
  float *x = rows(j->n);
  void *out = malloc(ob);
  for (int i = 0; i < 20; i++) j->bad += run(h, x, (size_t)j->n * row, out, ob) != SF_OK || memcmp(out, j->ref, ob);
  free(out);
  free(x);
  sf_model_destroy(h);
  return NULL;
}

int main(void) {
  row = sf_model_input_bytes(SF_MODEL_BATCH_INPUT);
  printf("max_batch %lld row %zu shape0 %lld bytes_for_3 %zu\n", (long long)sf_model_max_batch(), row,
         (long long)sf_model_input_shape(0)[0], sf_model_input_bytes_for(0, 3));
  sf_model_handle *h;
  if (sf_model_create(NULL, &h) != SF_OK) return 1;
  float *x = rows(3);
  size_t ob3 = sf_model_output_bytes_for(0, 3), ob2 = sf_model_output_bytes_for(0, 2);
  void *out = malloc(ob3);
  report("run_3", h, run(h, x, 3 * row, out, ob3));
  report("partial_row", h, run(h, x, 3 * row - 4, out, ob3));
  report("output_for_other_batch", h, run(h, x, 3 * row, out, ob2));
  report("empty", h, run(h, x, 0, out, 0));
  report("run_after_errors", h, run(h, x, 3 * row, out, ob3));
  /* four handles in threads, batch sizes 1, 2, 5, 9: each must give what it gives alone */
  struct job jobs[THREADS] = { { 1, 0, 0 }, { 2, 0, 0 }, { 5, 0, 0 }, { 9, 0, 0 } };
  for (int k = 0; k < THREADS; k++) {
    float *xk = rows(jobs[k].n);
    jobs[k].ref = malloc(sf_model_output_bytes_for(0, jobs[k].n));
    if (run(h, xk, (size_t)jobs[k].n * row, jobs[k].ref, sf_model_output_bytes_for(0, jobs[k].n)) != SF_OK) return 1;
    free(xk);
  }
  pthread_t t[THREADS];
  for (int k = 0; k < THREADS; k++) pthread_create(&t[k], NULL, worker, &jobs[k]);
  long bad = 0;
  for (int k = 0; k < THREADS; k++) {
    pthread_join(t[k], NULL);
    bad += jobs[k].bad;
  }
  printf("threads %s\n", bad ? "differs" : "same");
  sf_model_destroy(h);
  return 0;
}
