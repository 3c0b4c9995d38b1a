"""cuda-emu: hand-written CUDA kernels run on the CPU and compared with numpy.

Every CUDA source here is also compiled by NVRTC for sm_90 when cuda.bindings
is importable, so the kernels are known to be valid CUDA, not just valid emu.
"""
import numpy as np
import pytest

from symfuse.errors import CompileError, InputError
from symfuse.runtime.cuda_emu import EmuError, EmuModule, parse_kernels, preprocess

# what generated CUDA puts in front of kernels that use SF_DYNAMIC_SHARED
PRELUDE = r"""
#ifndef SYMFUSE_CUDA_EMU
#define SF_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif
"""

KERNELS = PRELUDE + r"""
// grid-stride elementwise with float4 loads/stores and a scalar tail
extern "C" __global__ void saxpy4(const float* __restrict__ x, float* __restrict__ y, float a, int n) {
  int n4 = n / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += blockDim.x * gridDim.x) {
    float4 u = x4[i], v = y4[i];
    v.x = fmaf(a, u.x, v.x); v.y = fmaf(a, u.y, v.y); v.z = fmaf(a, u.z, v.z); v.w = fmaf(a, u.w, v.w);
    y4[i] = v;
  }
  for (int i = 4 * n4 + blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    y[i] = a * x[i] + y[i];
}

// tree reduction in static shared memory, one partial sum per block
extern "C" __global__ void block_sum(const float* x, float* partial, int n) {
  __shared__ float buf[256];
  int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  buf[t] = i < n ? x[i] : 0.0f;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (t < s) buf[t] += buf[t + s];
    __syncthreads();
  }
  if (t == 0) partial[blockIdx.x] = buf[0];
}

__device__ __forceinline__ float warp_sum_down(float v) {
  for (int o = warpSize / 2; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max_xor(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// per-block sum and max: shuffles within warps, warp results through shared memory
extern "C" __global__ void warp_reduce(const float* x, float* sums, float* maxs, int n) {
  static __shared__ float wsum[32], wmax[32];
  int i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float v = i < n ? x[i] : 0.0f;
  float s = warp_sum_down(v), m = warp_max_xor(i < n ? v : __int_as_float(0xff800000));
  if (lane == 0) { wsum[warp] = s; wmax[warp] = m; }
  __syncthreads();
  if (warp == 0) {
    int nw = (blockDim.x + 31) / 32;
    s = lane < nw ? wsum[lane] : 0.0f;
    m = lane < nw ? wmax[lane] : __int_as_float(0xff800000);
    s = warp_sum_down(s);
    m = warp_max_xor(m);
    if (lane == 0) { sums[blockIdx.x] = s; maxs[blockIdx.x] = m; }
  }
}

// dynamic shared memory, plain CUDA spelling: reverse each block's segment
extern "C" __global__ void reverse_dyn(const float* x, float* y, int n) {
  extern __shared__ float seg[];
  int t = threadIdx.x, base = blockIdx.x * blockDim.x, i = base + t;
  seg[t] = i < n ? x[i] : 0.0f;
  __syncthreads();
  int last = min(n - base, (int)blockDim.x) - 1;
  if (t <= last) y[i] = seg[last - t];
}

// dynamic shared memory through the SF_DYNAMIC_SHARED convention, two arrays in one buffer
extern "C" __global__ void dyn_two_arrays(const int* x, int* y, int n) {
  SF_DYNAMIC_SHARED(int, buf);
  int* a = buf;
  int* b = buf + blockDim.x;
  int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  a[t] = i < n ? x[i] : 0;
  b[t] = 2 * t;
  __syncthreads();
  if (i < n) y[i] = a[(t + 1) % blockDim.x] + b[blockDim.x - 1 - t];
}

// the same exchange without its barrier: reads the other threads' slots too early
extern "C" __global__ void reverse_no_barrier(const float* x, float* y, int n) {
  __shared__ float seg[128];
  int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  seg[t] = x[i];
  y[i] = seg[blockDim.x - 1 - t];
}

extern "C" __global__ void histogram(const int* x, int n, int* bins, int nbins) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
    atomicAdd(&bins[x[i] % nbins], 1);
}

// classic tiled transpose: 32x8 threads move a 32x32 tile through padded shared memory
#define TILE 32
#define ROWS 8
extern "C" __global__ void transpose(const float* in, float* out, int rows, int cols) {
  __shared__ float tile[TILE][TILE + 1];
  int x = blockIdx.x * TILE + threadIdx.x, y = blockIdx.y * TILE + threadIdx.y;
  for (int j = 0; j < TILE; j += ROWS)
    if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(y + j) * cols + x];
  __syncthreads();
  x = blockIdx.y * TILE + threadIdx.x;
  y = blockIdx.x * TILE + threadIdx.y;
  for (int j = 0; j < TILE; j += ROWS)
    if (x < rows && y + j < cols) out[(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
}

// every built-in index of a 3-D grid of 3-D blocks
extern "C" __global__ void indices3d(int* out) {
  int bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int nt = blockDim.x * blockDim.y * blockDim.z;
  int* o = out + 6 * (bid * nt + tid);
  o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
  o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
}

// warp primitives, one result row per thread
extern "C" __global__ void warp_ops(const int* x, int* out, int src, int delta, int width) {
  int t = threadIdx.x, v = x[t];
  int* o = out + 10 * t;
  o[0] = __shfl_sync(0xffffffffu, v, src, width);
  o[1] = __shfl_up_sync(0xffffffffu, v, delta, width);
  o[2] = __shfl_down_sync(0xffffffffu, v, delta, width);
  o[3] = __shfl_xor_sync(0xffffffffu, v, delta, width);
  o[4] = (int)__ballot_sync(0xffffffffu, v & 1);
  o[5] = __any_sync(0xffffffffu, v > 90);
  o[6] = __all_sync(0xffffffffu, v >= 0);
  o[7] = __reduce_add_sync(0xffffffffu, v);
  o[8] = (int)__match_any_sync(0xffffffffu, v % 4);
  o[9] = __syncthreads_count(v & 1);
}

// lanes 0-15 and 16-31 shuffle within their own half-warp masks
extern "C" __global__ void half_warps(const float* x, float* y) {
  int t = threadIdx.x;
  unsigned mask = (t & 16) ? 0xffff0000u : 0x0000ffffu;
  float v = x[t];
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
  __syncwarp();
  y[t] = v;
}

struct Affine { float scale; int shift; };
extern "C" __global__ void scalars(double* out, double a, long long b, unsigned char c, unsigned int d, bool e,
                                   float4 v, Affine f) {
  out[0] = a; out[1] = (double)b; out[2] = c; out[3] = d; out[4] = e ? 1.0 : 0.0;
  out[5] = v.x + 10 * v.y + 100 * v.z + 1000 * v.w;
  out[6] = f.scale * f.shift;
}

extern "C" __global__ void intrinsics(const float* f, int* i_out, float* f_out) {
  if (threadIdx.x != 0) return;
  i_out[0] = __float2int_rn(f[0]);            // 2.5 -> 2 (ties to even)
  i_out[1] = __float2int_rn(f[1]);            // 1e10 -> INT_MAX (saturates)
  i_out[2] = __float2int_rz(f[2]);            // NaN -> 0
  i_out[3] = (int)__brev(1u);
  i_out[4] = (int)__byte_perm(0x33221100u, 0x77665544u, 0x5140u);
  i_out[5] = (int)__umulhi(0xffffffffu, 0x10u);
  i_out[6] = __mul24(0x00800001, 2);          // bit 23 is the sign
  i_out[7] = __popc(0xf0f0u) + 100 * __clz(1) + 10000 * __ffs(8);
  i_out[8] = __float_as_int(1.0f);
  i_out[9] = max(3, 7) + min(-2, 5) * 10 + (int)max(2u, 9u) * 100;
  f_out[0] = __saturatef(f[3]);               // 1.5 -> 1
  f_out[1] = rsqrtf(4.0f);
  f_out[2] = __expf(1.0f) + __fdividef(1.0f, 4.0f);
  f_out[3] = erfinvf(0.5f);
  f_out[4] = __frcp_rn(8.0f) + __int_as_float(0x3f800000);
  f_out[5] = normcdff(1.0f);
  f_out[6] = tanhf(0.5f) + erff(0.5f) + log1pf(0.5f) + expm1f(0.5f);
}

// the rest of the device API, compiled by both emu and NVRTC; results checked loosely
extern "C" __global__ void api_coverage(const float4* v, int* i_out, float* f_out, unsigned long long* u_out) {
  int t = threadIdx.x;
  float4 a = __ldg(&v[0]);
  int2 p = make_int2(t, -t);
  uint4 q = make_uint4(1u, 2u, 3u, 4u);
  double2 d = make_double2(1.0, 2.0);
  int pred;
  unsigned all = __match_all_sync(0xffffffffu, 7, &pred);
  int rmin = __reduce_min_sync(0xffffffffu, 5 - t);
  unsigned rmax = __reduce_max_sync(0xffffffffu, (unsigned)t);
  unsigned act = __activemask();
  __syncwarp(0xffffffffu);
  int any_odd = __syncthreads_or(t == 3), all_small = __syncthreads_and(t < 100);
  if (t == 0) {
    atomicAdd(&i_out[0], 2); atomicSub(&i_out[0], 1); atomicMax(&i_out[1], 9); atomicMin(&i_out[2], -9);
    atomicExch(&i_out[3], 4); atomicCAS(&i_out[4], 0, 5); atomicAnd(&i_out[5], 6); atomicOr(&i_out[6], 1);
    atomicXor(&i_out[7], 3); atomicInc((unsigned*)&i_out[8], 10u); atomicDec((unsigned*)&i_out[9], 10u);
    atomicAdd(&u_out[0], 5ull); atomicAdd(&f_out[0], 0.5f);
    i_out[10] = p.x + p.y + (int)(q.x + q.w) + (int)(d.x + d.y);
    i_out[11] = (int)all + pred + rmin + (int)rmax;
    i_out[12] = (int)act + any_odd + all_small;
    i_out[13] = (int)__funnelshift_l(0x80000000u, 1u, 1) + __ffsll(16ll) + __popcll(7ull) + __clzll(1ll);
    i_out[14] = __float2int_rd(-1.5f) + __float2int_ru(1.2f) + (int)__float2uint_rn(-3.f) + __double2int_rz(2.9);
    float s, c;
    sincosf(0.5f, &s, &c);
    __sincosf(0.5f, &s, &c);
    f_out[1] = a.x + a.y + a.z + a.w;
    f_out[2] = s * s + c * c;
    f_out[3] = normcdfinvf(0.5f) + erfcinvf(1.0f) + rcbrtf(8.0f) + sinpif(0.5f) + cospif(1.0f);
    f_out[4] = __fadd_rn(1.0f, 2.0f) + __fmul_rn(2.0f, 3.0f) + __fsqrt_rn(16.0f) + __powf(2.0f, 3.0f)
             + exp10f(1.0f) + __logf(1.0f) + __log2f(8.0f) + fminf(1.0f, 2.0f) + copysignf(1.0f, -2.0f);
    __threadfence();
    __threadfence_block();
    long long c0 = clock64();
    f_out[5] = clock64() >= c0 ? 1.0f : 0.0f;
  }
}

template <int N>
__global__ void scale_n(float* x) { x[blockIdx.x * blockDim.x + threadIdx.x] *= N; }
template __global__ void scale_n<3>(float*);
"""

BAD = r"""
// a barrier inside a branch only some threads take
extern "C" __global__ void divergent_barrier(float* x) {
  if (threadIdx.x < 16) {
    x[threadIdx.x] += 1.0f;
    __syncthreads();
  }
}
// early return before a barrier
extern "C" __global__ void early_return(float* x, int n) {
  int i = threadIdx.x;
  if (i >= n) return;
  __syncthreads();
  x[i] = 1.0f;
}
// two halves of the block wait at different barriers
extern "C" __global__ void two_barriers(float* x) {
  if (threadIdx.x < 32) { __syncthreads(); } else { __syncthreads(); }
}
// a full-warp shuffle after lanes 20-31 returned
extern "C" __global__ void shuffle_after_exit(float* x) {
  if (threadIdx.x >= 20) return;
  x[threadIdx.x] = __shfl_down_sync(0xffffffffu, x[threadIdx.x], 1);
}
// warp 0 waits in a shuffle for lane 0, which waits at the block barrier
extern "C" __global__ void crossed_waits(float* x) {
  if (threadIdx.x == 0) __syncthreads();
  else x[threadIdx.x] = __shfl_sync(0xffffffffu, x[threadIdx.x], 0);
}
extern "C" __global__ void failing_assert(int* x) {
  assert(x[threadIdx.x] < 5);
}
extern "C" __global__ void good(float* x) { x[threadIdx.x] = (float)threadIdx.x; }
"""

SOURCES = {"kernels": KERNELS, "bad": BAD}


@pytest.fixture(scope="module")
def mod():
    return EmuModule(KERNELS, name="emu_tests", kernels={"scale_n<3>": ["float*"]})


@pytest.fixture(scope="module")
def bad():
    return EmuModule(BAD, name="emu_bad")


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------- correctness

def test_kernel_names(mod):
    assert mod.kernel_names[:3] == ["saxpy4", "block_sum", "warp_reduce"]
    assert "scale_n<3>" in mod.kernel_names and "scale_n" not in mod.kernel_names   # template: via kernels=
    assert mod.get_function("saxpy4").param_types == [
        "const float* __restrict__", "float* __restrict__", "float", "int"]


@pytest.mark.parametrize("n", [1, 7, 1000, 4099])
def test_saxpy_float4(mod, rng, n):
    x, y = f32(rng, n), f32(rng, n)
    want = np.float32(1.5) * x + y
    mod.launch("saxpy4", grid=3, block=64, args=[x, y, 1.5, n])     # grid-stride: fewer threads than elements
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_block_reduction(mod, rng):
    n = 10000
    x = f32(rng, n)
    blocks = (n + 255) // 256
    partial = np.zeros(blocks, np.float32)
    mod.launch("block_sum", blocks, 256, [x, partial, n])
    want = np.pad(x, (0, blocks * 256 - n)).reshape(blocks, 256).astype(np.float64).sum(1)
    np.testing.assert_allclose(partial, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("block", [256, 96])
def test_warp_shuffle_reduction(mod, rng, block):
    n = 5000
    x = f32(rng, n)
    blocks = (n + block - 1) // block
    sums, maxs = np.zeros(blocks, np.float32), np.zeros(blocks, np.float32)
    mod.launch("warp_reduce", blocks, block, [x, sums, maxs, n])
    xp = np.pad(x.astype(np.float64), (0, blocks * block - n), constant_values=np.nan).reshape(blocks, block)
    np.testing.assert_allclose(sums, np.nansum(xp, 1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(maxs, np.nanmax(xp, 1).astype(np.float32))


def test_shuffle_from_missing_lane_is_poison(mod, rng):
    """Block of 40: warp 1 has 8 lanes, so lane 0's __shfl_down_sync(.., 16)
    reads a lane that does not exist -- undefined on the GPU, NaN here."""
    x = f32(rng, 80)
    sums, maxs = np.zeros(2, np.float32), np.zeros(2, np.float32)
    mod.launch("warp_reduce", 2, 40, [x, sums, maxs, 80])
    assert np.isnan(sums).all()


def test_dynamic_shared_memory(mod, rng):
    n, block = 1000, 128
    x, y = f32(rng, n), np.zeros(n, np.float32)
    mod.launch("reverse_dyn", (n + block - 1) // block, block, [x, y, n], shared_bytes=block * 4)
    want = np.concatenate([seg[::-1] for seg in np.split(x, range(block, n, block))])
    np.testing.assert_array_equal(y, want)

    xi, yi = rng.integers(0, 100, n).astype(np.int32), np.zeros(n, np.int32)
    mod.launch("dyn_two_arrays", (n + block - 1) // block, block, [xi, yi, n], shared_bytes=2 * block * 4)
    t = np.arange(n) % block
    xs = np.pad(xi, (0, -n % block)).reshape(-1, block)
    a = xs[np.arange(n) // block, (t + 1) % block]
    np.testing.assert_array_equal(yi, a + 2 * (block - 1 - t))


def test_barriers_are_real(mod, rng):
    """Without its barrier the exchange reads slots not yet written this block:
    thread 0 runs before thread 127 stores, exactly the race the GPU would have."""
    n, block = 512, 128
    x = f32(rng, n)
    y = np.zeros(n, np.float32)
    mod.launch("reverse_no_barrier", n // block, block, [x, y, n])
    assert not np.array_equal(y, x.reshape(-1, block)[:, ::-1].ravel())


def test_atomic_histogram(mod, rng):
    n, nbins = 20000, 37
    x = rng.integers(0, 1000, n).astype(np.int32)
    bins = np.zeros(nbins, np.int32)
    mod.launch("histogram", 16, 128, [x, n, bins, nbins])
    np.testing.assert_array_equal(bins, np.bincount(x % nbins, minlength=nbins))


@pytest.mark.parametrize("rows,cols", [(64, 96), (45, 70)])
def test_tiled_transpose(mod, rng, rows, cols):
    a = f32(rng, rows, cols)
    out = np.zeros((cols, rows), np.float32)
    mod.launch("transpose", ((cols + 31) // 32, (rows + 31) // 32), (32, 8), [a, out, rows, cols])
    np.testing.assert_array_equal(out, a.T)


def test_3d_indices(mod):
    grid, block = (3, 2, 2), (4, 3, 2)
    nb, nt = np.prod(grid), np.prod(block)
    out = np.full((nb * nt, 6), -1, np.int32)
    mod.launch("indices3d", grid, block, [out])
    bz, by, bx, tz, ty, tx = np.meshgrid(*[np.arange(d) for d in grid[::-1] + block[::-1]], indexing="ij")
    want = np.stack([a.ravel() for a in (tx, ty, tz, bx, by, bz)], 1)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("src,delta,width", [(5, 1, 32), (37, 3, 8), (2, 4, 16), (0, 2, 4)])
def test_warp_primitives(mod, rng, src, delta, width):
    block = 64
    x = rng.integers(0, 100, block).astype(np.int32)
    out = np.zeros((block, 10), np.int32)
    mod.launch("warp_ops", 1, block, [x, out, src, delta, width])
    for t in range(block):
        w0, lane = t - t % 32, t % 32
        seg = lane - lane % width
        sub = lane % width
        v = x[w0:w0 + 32]
        assert out[t, 0] == v[seg + src % width]
        assert out[t, 1] == (v[lane - delta] if sub - delta >= 0 else v[lane])
        assert out[t, 2] == (v[lane + delta] if sub + delta < width else v[lane])
        j = lane ^ delta
        assert out[t, 3] == (v[j] if j < seg + width else v[lane])
        assert out[t, 4] == np.int32(np.uint32(sum(1 << k for k in range(32) if v[k] & 1)))
        assert out[t, 5] == int((v > 90).any()) and out[t, 6] == 1
        assert out[t, 7] == v.sum()
        assert out[t, 8] == np.int32(np.uint32(sum(1 << k for k in range(32) if v[k] % 4 == v[lane] % 4)))
        assert out[t, 9] == (x & 1).sum()


def test_disjoint_warp_masks(mod, rng):
    x, y = f32(rng, 64), np.zeros(64, np.float32)
    mod.launch("half_warps", 1, 64, [x, y])
    np.testing.assert_allclose(y, np.repeat(x.reshape(4, 16).sum(1), 16), rtol=1e-5)


def test_scalar_and_template_arguments(mod, rng):
    out = np.zeros(7, np.float64)
    f = mod.get_function("scalars")
    affine = np.array([(0.5, 6)], dtype=[("scale", np.float32), ("shift", np.int32)])[0]   # struct by value
    f(1, 1, [out, 0.1, -(2 ** 40), np.uint8(200), 2 ** 32 - 1, True, np.float32([1, 2, 3, 4]), affine])
    np.testing.assert_array_equal(out, [0.1, -(2 ** 40), 200, 2 ** 32 - 1, 1, 4321, 3])
    with pytest.raises(InputError, match=r"argument 6 \(float4\): expected 16 bytes, got 8"):
        f(1, 1, [out, 0.1, 1, 1, 1, True, np.float32([1, 2]), affine])
    x = f32(rng, 64)
    want = x * 3
    mod.launch("scale_n<3>", 2, 32, [x])
    np.testing.assert_array_equal(x, want)


def test_intrinsics(mod):
    f = np.array([2.5, 1e10, np.nan, 1.5], np.float32)
    i_out, f_out = np.zeros(10, np.int32), np.zeros(7, np.float32)
    mod.launch("intrinsics", 1, 32, [f, i_out, f_out])
    assert list(i_out) == [2, 2 ** 31 - 1, 0, -2 ** 31, 0x55114400, 0xF, -0x7FFFFF * 2, 8 + 3100 + 40000,
                           0x3F800000, 7 - 20 + 900]
    from math import erf, exp, expm1, log1p, tanh
    want = [1.0, 0.5, exp(1) + 0.25, 0.4769362762044699, 1.125, 0.8413447460685429,
            tanh(0.5) + erf(0.5) + log1p(0.5) + expm1(0.5)]
    np.testing.assert_allclose(f_out, want, rtol=2e-6)


def test_api_coverage(mod):
    v = np.array([1, 2, 3, 4], np.float32)
    i_out = np.array([0, 0, 0, 0, 0, 7, 0, 5, 10, 0] + [0] * 5, np.int32)
    f_out, u_out = np.zeros(6, np.float32), np.zeros(1, np.uint64)
    mod.launch("api_coverage", 1, 32, [v, i_out, f_out, u_out])
    assert list(i_out[:10]) == [1, 9, -9, 4, 5, 6, 1, 6, 0, 10]
    assert i_out[10] == 0 + 5 + 3 and i_out[11] == -1 + 1 + (5 - 31) + 31
    assert i_out[12] == -1 + 1 + 1                         # __activemask(): all 32 lanes
    assert i_out[13] == 3 + 5 + 3 + 63
    assert i_out[14] == -2 + 2 + 0 + 2
    assert u_out[0] == 5
    np.testing.assert_allclose(f_out, [0.5, 10, 1, 0 + 0 + 0.5 + 1 - 1, 3 + 6 + 4 + 8 + 10 + 0 + 3 + 1 - 1, 1],
                               rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------ errors and checks

@pytest.mark.parametrize("kernel,args,block,match", [
    ("divergent_barrier", lambda: [np.zeros(64, np.float32)], 64, r"divergent __syncthreads\(\).*exited while 16"),
    ("early_return", lambda: [np.zeros(64, np.float32), 40], 64,
     r"thread \(40,0,0\) of block \(0,0,0\) exited while 40 thread\(s\) wait at the barrier at emu_bad.cu:13"),
    ("two_barriers", lambda: [np.zeros(64, np.float32)], 64,   # same line, different calls
     r"divergent __syncthreads\(\): thread \(32,0,0\) .* is at emu_bad.cu:18 "
     r"while 32 thread\(s\) wait at emu_bad.cu:18"),
    ("shuffle_after_exit", lambda: [np.zeros(32, np.float32)], 32,
     r"lane 20\) exited while lane 0 waits for it in __shfl_down_sync \(mask 0xffffffff\) at line 23"),
    ("crossed_waits", lambda: [np.zeros(32, np.float32)], 32,
     r"deadlock in block \(0,0,0\).*1 thread\(s\) wait at __syncthreads.*warp 0: lane\(s\) 1,.*wait in __shfl_sync"),
    ("failing_assert", lambda: [np.array([1, 2, 9, 3], np.int32)], 4,
     r"assertion `x\[threadIdx.x\] < 5' failed.*thread \(2,0,0\)"),
])
def test_runtime_errors_raise(bad, kernel, args, block, match):
    with pytest.raises(EmuError, match=match):
        bad.launch(kernel, 2, block, args())
    x = np.zeros(32, np.float32)              # the module (and the shared fiber pool) still works
    bad.launch("good", 1, 32, [x])
    np.testing.assert_array_equal(x, np.arange(32))


def test_argument_checks(mod, rng):
    x = rng.standard_normal(8)                                   # float64
    with pytest.raises(InputError, match=r"argument 0 .*float64.*float32"):
        mod.launch("saxpy4", 1, 32, [x, x.astype(np.float32), 1.0, 8])
    y = np.zeros(8, np.float32)
    with pytest.raises(InputError, match="takes 4 argument"):
        mod.launch("saxpy4", 1, 32, [y, y, 1.0])
    with pytest.raises(InputError, match="out of range"):
        mod.launch("saxpy4", 1, 32, [y, y, 1.0, 2 ** 31])
    with pytest.raises(InputError, match="expected an integer"):
        mod.launch("saxpy4", 1, 32, [y, y, 1.0, 8.0])
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(InputError, match="read-only"):
        mod.launch("saxpy4", 1, 32, [y, ro, 1.0, 8])
    with pytest.raises(InputError, match="1024 threads"):
        mod.launch("saxpy4", 1, (64, 32), [y, y, 1.0, 8])
    with pytest.raises(InputError, match="no kernel 'nope'"):
        mod.get_function("nope")


def test_concurrent_launches(mod, bad, rng):
    """Launches from several Python threads (ctypes drops the GIL) serialise on
    the shared fiber pool; results stay exact."""
    from concurrent.futures import ThreadPoolExecutor
    x = f32(rng, 4096)
    want = x.reshape(16, 256).astype(np.float64).sum(1)

    def work(k):
        for _ in range(10):
            partial = np.zeros(16, np.float32)
            mod.launch("block_sum", 16, 256, [x, partial, 4096])
            np.testing.assert_allclose(partial, want, rtol=1e-5, atol=1e-4)
            y = np.zeros(32, np.float32)
            bad.launch("good", 1, 32, [y])
            assert y[31] == 31
        return k
    with ThreadPoolExecutor(4) as ex:
        assert sorted(ex.map(work, range(4))) == [0, 1, 2, 3]


def test_compile_error():
    with pytest.raises(CompileError, match=r"(?s)source saved at .*\.cu.*error"):
        EmuModule('extern "C" __global__ void k(float* x) { x[0] = undefined_name; }', name="broken")


def test_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SYMFUSE_EMU_PCH", "0")       # building the precompiled header costs more than it saves
    src = 'extern "C" __global__ void k(int* x) { x[threadIdx.x] = 7; }'
    a = EmuModule(src)
    b = EmuModule(src)
    assert not a.cache_hit and b.cache_hit and a.lib_path == b.lib_path
    assert a.lib_path.startswith(str(tmp_path / "cuda-emu"))
    x = np.zeros(4, np.int32)
    b.launch("k", 1, 4, [x])
    assert list(x) == [7] * 4


def test_parsing():
    src = """
    // extern "C" __global__ void commented_out(int x) {}
    extern "C" __global__ void __launch_bounds__(128) a(const float* __restrict__ p, int n, float q[]);
    extern "C" __global__ void __launch_bounds__(128) a(const float* __restrict__ p, int n, float q[]) {}
    extern "C" __global__ void b(void) {}
    template <typename T> __global__ void c(T* x) {}
    """
    assert parse_kernels(src) == {"a": ["const float* __restrict__", "int", "float*"], "b": []}
    out = preprocess("extern __shared__ __align__(16) unsigned char smem[];\nstatic __shared__ float s[4];")
    assert out == ("unsigned char* const smem = reinterpret_cast<unsigned char*>(::sf_emu::dyn_smem);\n"
                   "__shared__ float s[4];")


# ----------------------------------------------------------------- valid CUDA

@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sources_compile_with_nvrtc(name):
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc")
    err, prog = nvrtc.nvrtcCreateProgram(SOURCES[name].encode(), f"{name}.cu".encode(), 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    try:
        (err,) = nvrtc.nvrtcCompileProgram(prog, 1, [b"--gpu-architecture=sm_90"])
    except Exception as e:                                       # library present but unusable
        pytest.skip(f"NVRTC unusable: {e}")
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        pytest.fail(f"NVRTC rejects {name}:\n{log.decode(errors='replace')}")
    nvrtc.nvrtcDestroyProgram(prog)
