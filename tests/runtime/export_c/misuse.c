/* Bad use of an exported model's C API (tests/runtime/test_export.py): each case
 * prints "case status message"; none may crash. Arguments: a missing path, a
 * truncated params file, another model's params file, a file with a wrong magic,
 * a params file whose data was damaged. */
#define SF_MODEL_ALIASES
#include SF_MODEL_HEADER

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report(const char *what, int rc, const char *msg) { printf("%s %d %s\n", what, rc, msg ? msg : "(null)"); }

static void create_case(const char *what, const char *path) {
  sf_model_handle *h = (sf_model_handle *)1;
  int rc = sf_model_create(path, &h);
  report(what, rc, sf_model_last_error(NULL));
  if (h != NULL) printf("%s handle-not-null\n", what);
}

int main(int argc, char **argv) {
  if (argc != 6) return 2;
  create_case("missing", argv[1]);
  create_case("truncated", argv[2]);
  create_case("other_model", argv[3]);
  create_case("bad_magic", argv[4]);
  create_case("checksum", argv[5]);
  report("create_null_out", sf_model_create(NULL, NULL), sf_model_last_error(NULL));

  sf_model_handle *h = NULL;
  int rc = sf_model_create(NULL, &h);
  report("create_default", rc, rc ? sf_model_last_error(NULL) : "ok");
  if (rc) return 1;
  size_t n_in = sf_model_num_inputs(), n_out = sf_model_num_outputs();
  const void *in[8];
  void *out[8];
  size_t in_bytes[8], out_bytes[8];
  for (size_t i = 0; i < n_in; i++) in[i] = calloc(1, in_bytes[i] = sf_model_input_bytes(i));
  for (size_t j = 0; j < n_out; j++) out[j] = calloc(1, out_bytes[j] = sf_model_output_bytes(j));

  report("run_null_handle", sf_model_run(NULL, in, in_bytes, n_in, out, out_bytes, n_out), sf_model_last_error(NULL));
  report("run_null_inputs", sf_model_run(h, NULL, in_bytes, n_in, out, out_bytes, n_out), sf_model_last_error(h));
  const void *saved = in[0];
  in[0] = NULL;
  report("run_null_input0", sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out), sf_model_last_error(h));
  in[0] = saved;
  in_bytes[0] -= 4;
  report("run_small_input", sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out), sf_model_last_error(h));
  in_bytes[0] += 4;
  out_bytes[0] += 4;
  report("run_big_output", sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out), sf_model_last_error(h));
  out_bytes[0] -= 4;
  report("run_count", sf_model_run(h, in, in_bytes, n_in + 1, out, out_bytes, n_out), sf_model_last_error(h));
  void *saved_out = out[0];
  out[0] = (void *)in[0];
  report("run_overlap", sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out), sf_model_last_error(h));
  out[0] = saved_out;
  char buf[16];
  report("get_unknown", sf_model_get_param(h, "no such parameter", buf, sizeof buf), sf_model_last_error(h));
  if (sf_model_num_params() > 0) {
    const char *p0 = sf_model_param_name(0);
    report("get_wrong_size", sf_model_get_param(h, p0, buf, 1), sf_model_last_error(h));
    report("set_null_buf", sf_model_set_param(h, p0, NULL, 4), sf_model_last_error(h));
  }
  report("load_other_model", sf_model_load_params(h, argv[3]), sf_model_last_error(h));
  report("query_out_of_range", sf_model_input_name(n_in) == NULL && sf_model_input_ndim(n_in) == -1 ? 0 : 1,
         "out-of-range queries answer NULL and -1");
  rc = sf_model_run(h, in, in_bytes, n_in, out, out_bytes, n_out);
  report("run_after_errors", rc, rc ? sf_model_last_error(h) : "ok");
  sf_model_destroy(h);
  sf_model_destroy(NULL);
  return 0;
}
