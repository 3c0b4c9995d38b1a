/* A stand-in for libcuda.so.1 (tests/runtime/test_export_cuda.py): the driver entry points a
 * CUDA export's launcher resolves, with host memory as device memory and the kernels run by
 * their cuda-emu builds (the same CUDA source compiled for the CPU). A CUDA export given it with
 * SF_CUDA_DRIVER_PATH runs its launch plan end to end on a machine without a GPU.
 *
 * Environment:
 *   FAKE_CUDA_KERNELS  a table, one kernel a line: "name index path": the kernel is the emu
 *                      shared object's sf_emu_launch_<index> (cuda_emu.py's trampolines)
 *   FAKE_CUDA_LOG      a file receiving one line per call that matters (modules, functions,
 *                      launches, captures, graph launches, what was still allocated at the end)
 *   FAKE_CUDA_DEVICES  how many GPUs there are (default 1)
 *   FAKE_CUDA_CC       their compute capability as major*10+minor (default 90)
 *   FAKE_CUDA_INIT     what cuInit returns (default 0) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef int (*emu_launch)(void **, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, size_t);

#define MAX_KERNELS 256
#define MAX_RECORDED 4096
#define MAX_PARAMS 64

typedef struct { char name[256]; emu_launch launch; const unsigned *psize; int nparams; } kernel;
/* a captured launch (k >= 0) or device-to-device copy (k < 0) */
typedef struct { int k; unsigned g[3], b[3], shared; unsigned char values[MAX_PARAMS][8];
                 CUdeviceptr dst, src; size_t n; } recorded;

static kernel kernels[MAX_KERNELS];
static int nkernels, live_allocations, capturing;
static recorded graph[MAX_RECORDED];
static int ngraph;
static FILE *log_file;
static int modules_loaded;

static void say(const char *fmt, ...) {
  if (!log_file) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(log_file, fmt, ap);
  va_end(ap);
  fputc('\n', log_file);
  fflush(log_file);
}

static int env_int(const char *name, int fallback) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : fallback;
}

static int load_table(void) {
  const char *path = getenv("FAKE_CUDA_KERNELS");
  if (!path) return 0;
  FILE *f = fopen(path, "r");
  if (!f) return 1;
  char name[256], so[4096];
  int index;
  void *pool = NULL;
  while (nkernels < MAX_KERNELS && fscanf(f, "%255s %d %4095s", name, &index, so) == 3) {
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "fake libcuda: %s\n", dlerror()); fclose(f); return 1; }
    void *(*pool_new)(size_t) = (void *(*)(size_t))dlsym(lib, "sf_emu_pool_new");
    void (*use_pool)(void *) = (void (*)(void *))dlsym(lib, "sf_emu_use_pool");
    if (!pool) pool = pool_new(128 * 1024);
    use_pool(pool);
    char sym[64];
    kernel *k = &kernels[nkernels++];
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(sym, sizeof sym, "sf_emu_launch_%d", index);
    k->launch = (emu_launch)dlsym(lib, sym);
    snprintf(sym, sizeof sym, "sf_emu_psize_%d", index);
    k->psize = (const unsigned *)dlsym(lib, sym);
    if (!k->launch || !k->psize) { fclose(f); return 1; }
    while (k->psize[k->nparams]) k->nparams++;
  }
  fclose(f);
  return 0;
}

CUresult cuInit(unsigned flags) {
  (void)flags;
  const char *log = getenv("FAKE_CUDA_LOG");
  if (log && !log_file) log_file = fopen(log, "a");
  int rc = env_int("FAKE_CUDA_INIT", 0);
  if (rc) return rc;
  return load_table() ? 999 : 0;
}

CUresult cuGetErrorName(CUresult e, const char **s) {
  *s = e == 100 ? "CUDA_ERROR_NO_DEVICE" : e == 500 ? "CUDA_ERROR_NOT_FOUND" : "CUDA_ERROR_FAKE";
  return 0;
}

CUresult cuGetErrorString(CUresult e, const char **s) {
  *s = e == 100 ? "no CUDA-capable device is detected" : e == 500 ? "named symbol not found" : "fake error";
  return 0;
}

CUresult cuDeviceGetCount(int *n) { *n = env_int("FAKE_CUDA_DEVICES", 1); return 0; }
CUresult cuDeviceGet(int *d, int ordinal) { *d = ordinal; return 0; }

CUresult cuDeviceGetAttribute(int *v, int attribute, int d) {
  (void)d;
  int cc = env_int("FAKE_CUDA_CC", 90);
  *v = attribute == 75 ? cc / 10 : attribute == 76 ? cc % 10 : 0;
  return 0;
}

CUresult cuDeviceGetName(char *name, int len, int d) { (void)d; snprintf(name, (size_t)len, "Fake GPU"); return 0; }
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)&kernels; return 0; }

CUresult cuDevicePrimaryCtxRelease_v2(int d) {
  (void)d;
  say("release %d live allocations, %d modules", live_allocations, modules_loaded);
  return 0;
}

CUresult cuCtxPushCurrent_v2(void *c) { (void)c; return 0; }
CUresult cuCtxPopCurrent_v2(void **c) { *c = NULL; return 0; }

/* a CUBIN is an ELF file whose e_flags name its SM (bits 8-15); PTX is text */
CUresult cuModuleLoadData(void **m, const void *image) {
  const unsigned char *p = image;
  if (memcmp(p, "\177ELF", 4) == 0) {
    uint32_t flags;
    memcpy(&flags, p + 0x30, 4);
    say("module cubin sm_%u", (flags >> 8) & 0xFF);
  } else {
    char arch[16] = "?";
    const char *target = strstr(image, ".target ");
    if (target) sscanf(target, ".target %15s", arch);
    say("module ptx %s", arch);
  }
  modules_loaded++;
  *m = (void *)p;
  return 0;
}

CUresult cuModuleUnload(void *m) { (void)m; modules_loaded--; return 0; }

CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
  (void)m;
  for (int i = 0; i < nkernels; i++)
    if (strcmp(kernels[i].name, name) == 0) { *f = &kernels[i]; return 0; }
  return 500;
}

CUresult cuFuncSetAttribute(void *f, int attribute, int value) { (void)f; (void)attribute; (void)value; return 0; }

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) {
  void *q = calloc(1, bytes + 64);
  if (!q) return 2;
  live_allocations++;
  *p = (CUdeviceptr)(uintptr_t)q;
  return 0;
}

CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(uintptr_t)p); live_allocations--; return 0; }
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { memset((void *)(uintptr_t)p, v, n); return 0; }

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st) {
  (void)st;
  memcpy((void *)(uintptr_t)d, s, n);
  return 0;
}

CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st) {
  (void)st;
  if (capturing) return 900;       /* CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED */
  memcpy(d, (void *)(uintptr_t)s, n);
  return 0;
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void *st) {
  (void)st;
  if (capturing) {
    if (ngraph == MAX_RECORDED) return 999;
    recorded *r = &graph[ngraph++];
    r->k = -1, r->dst = d, r->src = s, r->n = n;
    say("capture copy");
    return 0;
  }
  memmove((void *)(uintptr_t)d, (void *)(uintptr_t)s, n);
  return 0;
}

CUresult cuStreamCreate(void **s, unsigned flags) { (void)flags; *s = (void *)&graph; return 0; }
CUresult cuStreamDestroy_v2(void *s) { (void)s; return 0; }
CUresult cuStreamSynchronize(void *s) { (void)s; return 0; }

static CUresult run(kernel *k, const unsigned *g, const unsigned *b, unsigned shared, void **params) {
  say("launch %s %u %u %u %u %u %u %u", k->name, g[0], g[1], g[2], b[0], b[1], b[2], shared);
  return k->launch(params, g[0], g[1], g[2], b[0], b[1], b[2], shared) ? 719 : 0;
}

CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void *s, void **params, void **extra) {
  (void)s; (void)extra;
  kernel *k = f;
  unsigned g[3] = { gx, gy, gz }, b[3] = { bx, by, bz };
  if (!capturing) return run(k, g, b, shared, params);
  if (ngraph == MAX_RECORDED || k->nparams > MAX_PARAMS) return 999;
  recorded *r = &graph[ngraph++];     /* a capture keeps the parameters' values, as the driver does */
  r->k = (int)(k - kernels);
  memcpy(r->g, g, sizeof g);
  memcpy(r->b, b, sizeof b);
  r->shared = shared;
  for (int j = 0; j < k->nparams; j++) {
    if (k->psize[j] > 8) return 999;      /* no by-value structs in symfuse's kernels */
    memcpy(r->values[j], params[j], k->psize[j]);
  }
  say("capture %s", k->name);
  return 0;
}

CUresult cuStreamBeginCapture_v2(void *s, int mode) { (void)s; (void)mode; capturing = 1; ngraph = 0; return 0; }
CUresult cuStreamEndCapture(void *s, void **g) { (void)s; capturing = 0; *g = graph; return 0; }
CUresult cuGraphInstantiateWithFlags(void **e, void *g, unsigned long long flags) { (void)flags; *e = g; return 0; }
CUresult cuGraphExecDestroy(void *e) { (void)e; return 0; }
CUresult cuGraphDestroy(void *g) { (void)g; return 0; }

CUresult cuGraphLaunch(void *e, void *s) {
  (void)e; (void)s;
  int launches = 0;
  for (int i = 0; i < ngraph; i++) launches += graph[i].k >= 0;
  say("graph_launch %d launches", launches);
  for (int i = 0; i < ngraph; i++) {
    recorded *r = &graph[i];
    if (r->k < 0) {
      memmove((void *)(uintptr_t)r->dst, (void *)(uintptr_t)r->src, r->n);
      continue;
    }
    void *params[MAX_PARAMS];
    for (int j = 0; j < kernels[r->k].nparams; j++) params[j] = r->values[j];
    CUresult rc = run(&kernels[r->k], r->g, r->b, r->shared, params);
    if (rc) return rc;
  }
  return 0;
}
