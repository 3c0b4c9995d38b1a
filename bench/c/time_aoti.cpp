/* time_aoti.cpp: latency of one call of a PyTorch AOTInductor package run from
 * C++ (AOTIModelPackageLoader), timed like time_export.c (bench/study_export.py
 * builds it against the torch wheel's headers and libtorch).
 *
 *   ./time_aoti PACKAGE.pt2 THREADS WARMUP CALLS BUDGET INPUT.bin OUTPUT.bin D0 D1 ...
 *
 * INPUT.bin: float32, C order, shape D0 x D1 x ...; OUTPUT.bin receives the
 * last call's first output. Prints one JSON line like time_export.c. */
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <ATen/ATen.h>

#include <cstring>
#include <vector>

extern "C" {
#include "timing.h"
}

int main(int argc, char **argv) {
  if (argc < 9) {
    fprintf(stderr, "usage: %s PACKAGE THREADS WARMUP CALLS BUDGET INPUT.bin OUTPUT.bin D0 [D1 ...]\n", argv[0]);
    return 2;
  }
  at::set_num_threads(atoi(argv[2]));
  int warmup = atoi(argv[3]), calls = atoi(argv[4]);
  double budget_us = atof(argv[5]) * 1e6;
  std::vector<int64_t> shape;
  for (int i = 8; i < argc; i++) shape.push_back(atoll(argv[i]));
  size_t bytes = 0;
  void *raw = read_file(argv[6], &bytes);
  at::Tensor x = at::empty(shape, at::kFloat);
  if (!raw || bytes != x.nbytes()) {
    fprintf(stderr, "input: %zu bytes, the shape needs %zu\n", bytes, (size_t)x.nbytes());
    return 2;
  }
  std::memcpy(x.data_ptr(), raw, bytes);
  c10::InferenceMode guard;
  torch::inductor::AOTIModelPackageLoader loader(argv[1]);
  std::vector<at::Tensor> inputs{x}, out;
  for (int i = 0; i < warmup; i++) out = loader.run(inputs);
  std::vector<double> t((size_t)calls);
  int n = 0;
  double start = now_us();
  while (n < calls) {
    double t0 = now_us();
    out = loader.run(inputs);
    t[(size_t)n++] = now_us() - t0;
    if (n >= MIN_CALLS && now_us() - start > budget_us) break;
  }
  at::Tensor y = out.at(0).contiguous();
  if (!write_file(argv[7], y.data_ptr(), y.nbytes())) return 2;
  print_stats(t.data(), n);
  return 0;
}
