/* A CUDA export on a machine without the CUDA driver (tests/runtime/test_export_cuda.py): each
 * case prints "case status message"; none may crash. The exit status is create's. */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <stdio.h>

static void report(const char *what, int rc, const char *msg) { printf("%s %d %s\n", what, rc, msg ? msg : "(null)"); }

int main(void) {
  sf_model_handle *h = (sf_model_handle *)1;
  int created = sf_model_create(NULL, &h);
  report("create", created, sf_model_last_error(NULL));
  if (h != NULL) printf("create handle-not-null\n");
  /* a second try gives the same answer: the failed driver load is remembered, not retried into a crash */
  report("create_again", sf_model_create(NULL, &h), sf_model_last_error(NULL));
  report("create_null_out", sf_model_create(NULL, NULL), sf_model_last_error(NULL));
  const void *in[1] = { "" };
  void *out[1] = { 0 };
  size_t bytes[1] = { 0 };
  unsigned long long din[1] = { 0 }, dout[1] = { 0 };
  report("run_null_handle", sf_model_run(NULL, in, bytes, 1, out, bytes, 1), sf_model_last_error(NULL));
  report("run_device_null_handle", sf_model_run_device(NULL, din, 1, dout, 1), sf_model_last_error(NULL));
  char buf[4];
  report("get_null_handle", sf_model_get_param(NULL, "x", buf, sizeof buf), sf_model_last_error(NULL));
  report("save_null_handle", sf_model_save_params(NULL, "x.params"), sf_model_last_error(NULL));
  report("load_null_handle", sf_model_load_params(NULL, "x.params"), sf_model_last_error(NULL));
  report("num_inputs", (int)sf_model_num_inputs(), sf_model_input_name(0));
  sf_model_destroy(NULL);
  return created;
}
