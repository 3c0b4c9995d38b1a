"""NVRTC compile time for ~40 small generated kernels, three ways, all cold (no cache):

    python bench/bench_nvrtc.py [--kernels 40] [--arch sm_90] [--repeat 3] [--workers N]

(a) one translation unit holding every kernel, (b) one program per kernel,
sequentially, (c) one program per kernel on a thread pool (nvrtcCompileProgram
releases the GIL). Also: the same TU as PTX only (no ptxas), and a warm
cache hit of (b). The kernels are what a fusing compiler emits: elementwise
chains (unary/binary mixes, float4 vectorised, broadcast, where/select) and
row reductions (sum, max, softmax, layernorm, with warp shuffles and shared
memory). Best of ``--repeat``. Results go to bench/results/nvrtc.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from symfuse.runtime import nvrtc  # noqa: E402
from symfuse.runtime.cache import DiskCache  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

UNARY = ["expf({x})", "tanhf({x})", "1.f / (1.f + expf(-{x}))", "fmaxf({x}, 0.f)", "sqrtf(fabsf({x}) + 1e-6f)",
         "0.5f * {x} * (1.f + erff({x} * 0.70710678f))", "logf(1.f + expf({x}))", "{x} * {x}", "rsqrtf({x} * {x} + 1.f)",
         "sinf({x}) + cosf({x})"]
BINARY = ["{a} + {b}", "{a} * {b}", "{a} - {b}", "fmaxf({a}, {b})", "{a} / ({b} + 1.f)", "{a} > {b} ? {a} : {b}"]

HELPERS = r"""
#define NEG_INF (-__int_as_float(0x7f800000))   // NVRTC has no <cmath> INFINITY
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}
// block-wide reduction of one value per thread; blockDim.x a multiple of 32, <= 1024
template <bool MAX>
__device__ float block_reduce(float v) {
  __shared__ float part[32];
  __shared__ float total;
  v = MAX ? warp_max(v) : warp_sum(v);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : (MAX ? NEG_INF : 0.f);
    v = MAX ? warp_max(v) : warp_sum(v);
    if (threadIdx.x == 0) total = v;
  }
  __syncthreads();
  return total;
}
"""


def elementwise(i: int) -> str:
    """A fused chain of 3-6 ops over 2 inputs; every 4th is float4-vectorised,
    every 5th broadcasts a row vector."""
    depth = 3 + i % 4
    expr = "a"
    for d in range(depth):
        if d % 2:
            expr = BINARY[(i + d) % len(BINARY)].format(a=f"({expr})", b="b" if d % 3 else "(b * 0.5f)")
        else:
            expr = UNARY[(i * 3 + d) % len(UNARY)].format(x=f"({expr})")
    name = f"fused_ew_{i}"
    if i % 4 == 0:
        comp = "\n".join(f"  {{ float a = va.{c}, b = vb.{c}; vo.{c} = {expr}; }}" for c in "xyzw")
        return (f'extern "C" __global__ void {name}(const float4* __restrict__ A, const float4* __restrict__ B, '
                f"float4* __restrict__ out, long n4) {{\n"
                f"  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n4; i += (long)gridDim.x * blockDim.x) {{\n"
                f"    float4 va = A[i], vb = B[i], vo;\n{comp}\n    out[i] = vo;\n  }}\n}}\n")
    bidx = "i % cols" if i % 5 == 0 else "i"
    return (f'extern "C" __global__ void {name}(const float* __restrict__ A, const float* __restrict__ B, '
            f"float* __restrict__ out, long n, long cols) {{\n"
            f"  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {{\n"
            f"    float a = A[i], b = B[{bidx}];\n    out[i] = {expr};\n  }}\n}}\n")


def reduction(i: int) -> str:
    """One block per row: sum, max, mean of a fused prologue, softmax, layernorm."""
    name = f"fused_red_{i}"
    kind = i % 5
    pro = UNARY[i % len(UNARY)].format(x="x[r * cols + c]")
    head = (f'extern "C" __global__ void {name}(const float* __restrict__ x, float* __restrict__ out, '
            f"int cols{', const float* __restrict__ g, const float* __restrict__ bta' if kind == 4 else ''}) {{\n"
            f"  const long r = blockIdx.x;\n")
    if kind in (0, 1, 2):
        red = "false" if kind != 1 else "true"
        init = "NEG_INF" if kind == 1 else "0.f"
        acc = "v = fmaxf(v, {p})" if kind == 1 else "v += {p}"
        scale = " / cols" if kind == 2 else ""
        return (head + f"  float v = {init};\n"
                f"  for (int c = threadIdx.x; c < cols; c += blockDim.x) {acc.format(p=pro)};\n"
                f"  v = block_reduce<{red}>(v);\n  if (threadIdx.x == 0) out[r] = v{scale};\n}}\n")
    if kind == 3:   # softmax
        return (head + "  float m = NEG_INF;\n"
                "  for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, x[r * cols + c]);\n"
                "  m = block_reduce<true>(m);\n  float s = 0.f;\n"
                "  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(x[r * cols + c] - m);\n"
                "  s = block_reduce<false>(s);\n"
                "  for (int c = threadIdx.x; c < cols; c += blockDim.x) out[r * cols + c] = expf(x[r * cols + c] - m) / s;\n"
                "}\n")
    return (head + "  float s = 0.f, q = 0.f;\n"   # layernorm
            "  for (int c = threadIdx.x; c < cols; c += blockDim.x) { float v = x[r * cols + c]; s += v; q += v * v; }\n"
            "  s = block_reduce<false>(s);\n  q = block_reduce<false>(q);\n"
            "  float mean = s / cols, inv = rsqrtf(q / cols - mean * mean + 1e-5f);\n"
            "  for (int c = threadIdx.x; c < cols; c += blockDim.x)\n"
            "    out[r * cols + c] = (x[r * cols + c] - mean) * inv * g[c] + bta[c];\n}\n")


def kernels(n: int) -> list[tuple[str, str]]:
    """(name, body): two thirds elementwise, one third reductions."""
    out = []
    for i in range(n):
        body = reduction(i) if i % 3 == 2 else elementwise(i)
        out.append((body.split("void ")[1].split("(")[0], body))
    return out


def gil_stall(fn) -> tuple[float, float]:
    """(longest pause of a pure-Python thread while fn runs, fn's duration):
    a pause close to the duration would mean fn holds the GIL throughout."""
    gaps, done = [0.0], threading.Event()

    def spin():
        last = time.perf_counter()
        while not done.is_set():
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last)
            last = now

    th = threading.Thread(target=spin)
    th.start()
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    done.set()
    th.join()
    return gaps[0], dt


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", type=int, default=40)
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="threads for (c); default one per CPU")
    args = ap.parse_args()

    ks = kernels(args.kernels)
    one_tu = HELPERS + "\n".join(body for _, body in ks)
    programs = [(HELPERS + body, name) for name, body in ks]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = args.workers or cpus

    nvrtc.compile_cuda(programs[0][0], programs[0][1], args.arch, cache=False)   # load libnvrtc, warm up
    rows, extra = {}, {}
    r = nvrtc.compile_cuda(one_tu, "all", args.arch, cache=False)
    assert len(r.resources) == len(ks), sorted(r.resources)
    rows["(a) one TU, all kernels"] = best(lambda: nvrtc.compile_cuda(one_tu, "all", args.arch, cache=False),
                                            args.repeat)
    rows["(b) one program per kernel, sequential"] = best(
        lambda: nvrtc.compile_many(programs, args.arch, cache=False, parallel=False), args.repeat)
    rows[f"(c) one program per kernel, {workers} threads"] = best(
        lambda: nvrtc.compile_many(programs, args.arch, cache=False, parallel=True, max_workers=workers),
        args.repeat)
    extra["one TU, PTX only (no ptxas)"] = best(
        lambda: nvrtc.compile_cuda(one_tu, "all", args.arch, output="ptx", cache=False), args.repeat)
    with tempfile.TemporaryDirectory() as d:
        c = DiskCache(d)
        nvrtc.compile_many(programs, args.arch, cache=c, parallel=False)
        calls = nvrtc.NVRTC_CALLS
        extra["(b) again, warm cache"] = best(lambda: nvrtc.compile_many(programs, args.arch, cache=c,
                                                                          parallel=False), args.repeat)
        assert nvrtc.NVRTC_CALLS == calls

    stall, dt = gil_stall(lambda: nvrtc.compile_cuda(one_tu, "all", args.arch, cache=False))

    regs = sorted(x.registers for x in r.resources.values())
    print(f"NVRTC {'.'.join(map(str, nvrtc.nvrtc_version()))}, {len(ks)} kernels, {args.arch}, "
          f"{cpus} CPUs, best of {args.repeat}; registers min/median/max "
          f"{regs[0]}/{regs[len(regs) // 2]}/{regs[-1]}, spills: {sum(x.spills for x in r.resources.values())}")
    w = max(map(len, list(rows) + list(extra)))
    print(f"{'':{w}}  {'total s':>8}  {'ms/kernel':>9}")
    for label, s in {**rows, **extra}.items():
        print(f"{label:{w}}  {s:8.3f}  {s * 1e3 / len(ks):9.1f}")
    print(f"GIL: a Python thread's longest pause during the {dt:.2f} s one-TU compile was {stall * 1e3:.1f} ms")

    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "nvrtc.json"), "w") as f:
        json.dump({"nvrtc": nvrtc.nvrtc_version(), "arch": args.arch, "kernels": len(ks), "cpus": cpus,
                   "workers": workers, "repeat": args.repeat,
                   "seconds": {**rows, **extra},
                   "gil_max_pause_s": stall, "gil_probe_compile_s": dt,
                   "registers": {k: v.registers for k, v in r.resources.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
