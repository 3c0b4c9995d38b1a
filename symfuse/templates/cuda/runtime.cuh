/* symfuse CUDA runtime library: the device code of every op the cuda backend
 * does not generate itself (matmul, convolution and its gradients, pooling and
 * its gradients, the softmax family, gathers, one-hot, argmax/argmin, Philox
 * random numbers, concatenation, padding, strided copies). It mirrors the C
 * runtime (templates/c/runtime.h) op for op; the semantics are those of the
 * numpy references in symfuse/ir/ops/.
 *
 * Conventions
 * -----------
 * - The functions are `__device__` templates called from the body of an
 *   `extern "C" __global__` kernel that symfuse/codegen/cuda_library.py writes:
 *   one call per launch, every size a literal (so after inlining all index
 *   arithmetic is by constants), tile sizes and dimension counts template
 *   arguments. The GEMM-class and pooling functions also serve the
 *   precompiled library (templates/cuda/lib_kernel.cu.j2): the same templates
 *   with sizes from kernel arguments and SfFastDiv divisors (see "divisors"). Python chooses grid and block; every kernel here also works
 *   for any grid (grid-stride loops over its work items), and reads the block
 *   size it was written for from its template arguments / blockDim.
 * - T: element type (bool is uint8_t). I: index type (int when every extent
 *   of the op fits, else int64_t). Ii: the index tensor's type of gathers.
 * - Every tensor is a contiguous row-major buffer. Row-wise ops view x as
 *   [outer, n, inner] (the axis of length n in the middle).
 * - No float atomics anywhere: every output element is written by exactly one
 *   thread, and every sum is taken in an order fixed by the sizes alone, so
 *   results do not depend on scheduling (nor on the grid size).
 * - Scratch (device memory the host allocates per op) is passed as `char*`:
 *   split-K partial sums of conv2d_grad_weight, window argmaxes of
 *   max_pool2d_grad.
 * - Shared memory is static (`__shared__` arrays sized by template arguments).
 */
#ifndef SYMFUSE_CUDA_RUNTIME
#define SYMFUSE_CUDA_RUNTIME

#include "prelude.cuh"

#define SF_MEM __device__ __forceinline__       /* member functions */
#define SF_FULL 0xffffffffu

/* grid-stride loop over [0, total) in index type I */
#define SF_GRID_LOOP(I, i, total)                                                          \
  for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < (I)(total);               \
       i += (I)gridDim.x * (I)blockDim.x)

/* ------------------------------------------------------------------ divisors
 * The GEMM-class kernels divide indices by sizes through a divisor object D with
 * div(n) / mod(n), so one template serves both builds:
 * - SfDivLit<I>: the shape-specialised kernels (sizes are literals in the kernel
 *   body): plain / and %, which the compiler turns into multiply-shift sequences.
 * - SfFastDiv: the precompiled library kernels (sizes are kernel arguments):
 *   division by an invariant as one __umulhi and a shift (CUTLASS FastDivmod
 *   style), magic (mul, shift) computed on the host (cuda_library.fast_divmod):
 *   shift = ceil(log2 d), mul = ceil(2^(31+shift) / d), so that for
 *   0 <= n < 2^31: n / d == umulhi(2n, mul) >> shift (d == 1 included, no branch).
 *   A negative n gives a meaningless quotient: callers only use it where n >= 0. */
template <class I> struct SfDivLit {
  I d;
  SF_MEM I div(I n) const { return n / d; }
  SF_MEM I mod(I n) const { return n % d; }
};
struct SfFastDiv {
  int d;
  unsigned mul, shift;
  SF_MEM int div(int n) const { return (int)(__umulhi((unsigned)n << 1, mul) >> shift); }
  SF_MEM int mod(int n) const { return n - div(n) * d; }
};
/* a divisor kernel argument triple: name_d, name_m, name_s */
#define SF_FASTDIV(name) SfFastDiv{name##_d, name##_m, name##_s}

/* ------------------------------------------------------------------ scalar helpers */
template <class T> SF_DEV bool sf_isnan(T v) { return v != v; }
template <class T> SF_DEV bool sf_isfinite(T v) { return v == v && v != (T)INFINITY && v != -(T)INFINITY; }
/* max that keeps a NaN once seen (either operand) */
template <class T> SF_DEV T sf_max_nan(T m, T v) { return (v > m || v != v) ? v : m; }

template <class T> SF_DEV T sf_warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(SF_FULL, v, o);
  return v;
}
template <class T> SF_DEV T sf_warp_max_nan(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = sf_max_nan(v, (T)__shfl_xor_sync(SF_FULL, v, o));
  return v;
}

/* Block-wide reductions (every thread of the block calls; all get the result).
 * smem: 32 elements of shared scratch; blockDim.x a multiple of 32. */
template <class T> SF_DEV T sf_block_sum(T v, T* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = sf_warp_sum(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nw ? smem[lane] : (T)0;
    v = sf_warp_sum(v);
    if (lane == 0) smem[32] = v;
  }
  __syncthreads();
  const T r = smem[32];
  __syncthreads();
  return r;
}
template <class T> SF_DEV T sf_block_max_nan(T v, T* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = sf_warp_max_nan(v);
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nw ? smem[lane] : (T)-INFINITY;
    v = sf_warp_max_nan(v);
    if (lane == 0) smem[32] = v;
  }
  __syncthreads();
  const T r = smem[32];
  __syncthreads();
  return r;
}

/* ------------------------------------------------------------------ copies
 * Generic strided gather: dst (contiguous, total elements, row-major over
 * shape[ND]) [i] = src[sum_k i_k * sst[k]]; strides may be 0 (broadcast) or
 * negative (flip). transpose / broadcast_to / slice / flip lower to this. */
template <class T, class I, int ND>
SF_DEV void sf_gather_copy(const T* __restrict__ src, T* __restrict__ dst, I total, const I (&shape)[ND],
                           const I (&sst)[ND]) {
  SF_GRID_LOOP(I, i, total) {
    I q = i, so = 0;
#pragma unroll
    for (int k = ND - 1; k > 0; k--) {
      so += (q % shape[k]) * sst[k];
      q /= shape[k];
    }
    so += q * sst[0];
    dst[i] = src[so];
  }
}

/* The same gather when it is a transpose: the innermost output dim (ND-1) has source
 * stride sst[ND-1] != 1 and dim B has source stride 1. Tiles of 32 (dim B) x 32 (dim
 * ND-1) go through shared memory so that both the reads (along B) and the writes
 * (along ND-1) are coalesced. blockDim = (32, 8); grid.x over tiles x other dims. */
template <class T, class I, int ND>
SF_DEV void sf_transpose_tiled(const T* __restrict__ src, T* __restrict__ dst, const I (&shape)[ND],
                               const I (&sst)[ND], int B) {
  __shared__ T tile[32][33];
  const I na = shape[ND - 1], nb = shape[B];
  const I nta = (na + 31) / 32, ntb = (nb + 31) / 32;
  I rest = 1, dstb = 1;                   /* product of the other dims; dst stride of dim B */
#pragma unroll
  for (int k = 0; k < ND - 1; k++) rest *= k == B ? (I)1 : shape[k];
#pragma unroll
  for (int k = B + 1; k < ND; k++) dstb *= shape[k];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (I t = blockIdx.x; t < nta * ntb * rest; t += gridDim.x) {
    const I ta = t % nta, tb = (t / nta) % ntb;
    I q = t / (nta * ntb), so = 0, dof = 0, ds = na;
#pragma unroll
    for (int k = ND - 2; k >= 0; k--) {   /* the other dims' offsets (dst is row-major) */
      if (k != B) {
        const I ik = q % shape[k];
        q /= shape[k];
        so += ik * sst[k];
        dof += ik * ds;
      }
      ds *= shape[k];
    }
    const I a0 = ta * 32, b0 = tb * 32;
#pragma unroll
    for (int r = 0; r < 32; r += 8) {     /* read along B (source stride 1) */
      const I a = a0 + ty + r, b = b0 + tx;
      if (a < na && b < nb) tile[ty + r][tx] = src[so + b + a * sst[ND - 1]];
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 32; r += 8) {     /* write along ND-1 (dst stride 1) */
      const I b = b0 + ty + r, a = a0 + tx;
      if (a < na && b < nb) dst[dof + b * dstb + a] = tile[tx][ty + r];
    }
    __syncthreads();
  }
}

/* dst[i] = src[i] */
template <class T, class I>
SF_DEV void sf_copy(const T* __restrict__ src, T* __restrict__ dst, I total) {
  SF_GRID_LOOP(I, i, total) dst[i] = src[i];
}

/* dst[i] = s * src[i] (a gemm over an empty contraction) */
template <class T, class I>
SF_DEV void sf_scale(const T* __restrict__ src, T* __restrict__ dst, I total, T s) {
  SF_GRID_LOOP(I, i, total) dst[i] = s * src[i];
}

/* rows x len block of src (contiguous) -> dst rows dst_stride apart (one operand of a
 * concatenation) */
template <class T, class I>
SF_DEV void sf_copy_rows(const T* __restrict__ src, T* __restrict__ dst, I rows, I len, I dst_stride) {
  SF_GRID_LOOP(I, i, rows * len) dst[(i / len) * dst_stride + i % len] = src[i];
}

/* pad as a gather: y (oshape, contiguous) [o] = x[j / step] where j = o - lo per dim,
 * when every j >= 0, j % step == 0 and j / step < xshape; else value. step = interior + 1. */
template <class T, class I, int ND>
SF_DEV void sf_pad(const T* __restrict__ x, T* __restrict__ y, I total, const I (&oshape)[ND],
                   const I (&lo)[ND], const I (&step)[ND], const I (&xshape)[ND], T value) {
  SF_GRID_LOOP(I, i, total) {
    I q = i, xo = 0, xs = 1;
    bool inside = true;
#pragma unroll
    for (int k = ND - 1; k >= 0; k--) {
      const I ik = k ? q % oshape[k] : q;
      if (k) q /= oshape[k];
      const I j = ik - lo[k];
      const I jj = j / step[k];
      inside = inside && j >= 0 && j - jj * step[k] == 0 && jj < xshape[k];
      xo += jj * xs;
      xs *= xshape[k];
    }
    y[i] = inside ? x[xo] : value;
  }
}

/* ------------------------------------------------------------------ GEMM core
 * C tile (BM x BN) = sum over nk k-tiles of A tile (BM x BK) @ B tile (BK x BN).
 * NT = (BM/TM)*(BN/TN) threads (blockDim.x); thread (tx, ty) = (tid % TX, tid / TX)
 * owns the TM x TN micro-tile at rows ty*TM.., columns tx*TN.. (contiguous, so each
 * k step reads its TM + TN operands from shared memory as 16-byte vectors).
 * Operands come from loader objects that fill the thread's share of the next tile
 * into registers (prefetched while the current tile is multiplied out of shared
 * memory), in one of two mappings of the tile element e = tid + i*NT:
 *   KFAST:  k = e % BK, o = e / BK     (operand contiguous along k)
 *   !KFAST: o = e % BO, k = e / BO     (operand contiguous along its row/col o)
 * Shared tiles are stored k-major, [BK][BO + PAD] with 16-byte aligned rows. */
template <class T, int BM, int BN, int BK, int TM, int TN, bool AKF, bool BKF, class LA, class LB>
SF_DEV void sf_gemm_tile(const LA& la, const LB& lb, int nk, T (&acc)[TM][TN]) {
  constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY;
  constexpr int AP = BM * BK / NT, BP = BK * BN / NT;
  static_assert(AP * NT == BM * BK && BP * NT == BK * BN, "tile not divisible by the thread count");
  static_assert(NT % BK == 0 && NT % BM == 0 && NT % BN == 0, "loader mappings need NT % BK/BM/BN == 0");
  constexpr int PAD = sizeof(T) >= 16 ? 1 : 16 / (int)sizeof(T);
  __shared__ __align__(16) T As[BK][BM + PAD];
  __shared__ __align__(16) T Bs[BK][BN + PAD];
  const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
#pragma unroll
  for (int i = 0; i < TM; i++)
#pragma unroll
    for (int j = 0; j < TN; j++) acc[i][j] = (T)0;
  T ra[AP], rb[BP];
  if (nk > 0) {
    la.load(0, ra);
    lb.load(0, rb);
  }
  for (int t = 0; t < nk; t++) {
#pragma unroll
    for (int i = 0; i < AP; i++) {
      const int e = tid + i * NT;
      if (AKF) As[e % BK][e / BK] = ra[i];
      else As[e / BM][e % BM] = ra[i];
    }
#pragma unroll
    for (int i = 0; i < BP; i++) {
      const int e = tid + i * NT;
      if (BKF) Bs[e % BK][e / BK] = rb[i];
      else Bs[e / BN][e % BN] = rb[i];
    }
    __syncthreads();
    if (t + 1 < nk) {          /* next tile's global loads overlap this tile's math */
      la.load(t + 1, ra);
      lb.load(t + 1, rb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk++) {
      T a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i++) a[i] = As[kk][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; j++) b[j] = Bs[kk][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
}

/* Operand tile of a strided matrix: element (o, k) = p[o*so + k*sk], zero outside
 * o < O, kbeg <= k < kend. o0: the tile's first o. */
template <class T, class I, int BO, int BK, int NT, bool KFAST> struct SfMatLoader {
  static constexpr int P = BO * BK / NT;
  const T* __restrict__ p;
  I O, so, sk, kbeg, kend, o0;
  SF_MEM void load(int t, T (&r)[P]) const {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < P; i++) {
      const int e = tid + i * NT;
      const I o = o0 + (KFAST ? e / BK : e % BO);
      const I k = kbeg + (I)t * BK + (KFAST ? e % BK : e / BO);
      r[i] = (o < O && k < kend) ? p[o * so + k * sk] : (T)0;
    }
  }
};

/* ------------------------------------------------------------------ matmul
 * C[b] (M x N) = op(A[b]) @ op(B[b]) over the batch index b < nb; the batch
 * shape (collapsed, ND >= 1; divisors bdiv, nb = their product) gives each
 * operand's element offset per batch step (ast / bst, 0 where broadcast). TA / TB:
 * the buffer holds the transpose (K x M / N x K). Grid: x over the
 * ceil(M/BM) * ntl tiles (ntl = ceil(N/BN) column tiles, a divisor), z over batches. */
template <class T, class I, int BM, int BN, int BK, int TM, int TN, bool TA, bool TB, int ND, class D>
SF_DEV void sf_matmul(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C, I M, I N, I K,
                      const D (&bdiv)[ND], const I (&ast)[ND], const I (&bst)[ND], const D ntl,
                      const T* __restrict__ Z = nullptr, T alpha = 1, T beta = 0) {
  constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY;
  I nb = 1;
#pragma unroll
  for (int d = 0; d < ND; d++) nb *= bdiv[d].d;
  const I mt = (M + BM - 1) / BM;
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  for (I b = blockIdx.z; b < nb; b += gridDim.z) {
    I ao = 0, bo = 0, q = b;
#pragma unroll
    for (int d = ND - 1; d >= 0; d--) {
      const I id = bdiv[d].mod(q);
      q = bdiv[d].div(q);
      ao += id * ast[d];
      bo += id * bst[d];
    }
    for (I tile = blockIdx.x; tile < mt * ntl.d; tile += gridDim.x) {
      const I m0 = ntl.div(tile) * BM, n0 = ntl.mod(tile) * BN;
      const SfMatLoader<T, I, BM, BK, NT, !TA> la{A + ao, M, TA ? (I)1 : K, TA ? M : (I)1, 0, K, m0};
      const SfMatLoader<T, I, BN, BK, NT, TB> lb{B + bo, N, TB ? K : (I)1, TB ? (I)1 : N, 0, K, n0};
      T acc[TM][TN];
      sf_gemm_tile<T, BM, BN, BK, TM, TN, !TA, TB>(la, lb, (int)((K + BK - 1) / BK), acc);
      T* Cb = C + b * M * N;
      const T* Zb = Z != nullptr ? Z + b * M * N : nullptr;   /* gemm: C = alpha * A @ B + beta * Z */
#pragma unroll
      for (int i = 0; i < TM; i++) {
        const I m = m0 + ty * TM + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
          const I n = n0 + tx * TN + j;
          if (n < N) Cb[m * N + n] = Zb != nullptr ? alpha * acc[i][j] + beta * Zb[m * N + n] : acc[i][j];
        }
      }
    }
  }
}

/* ------------------------------------------------------------------ convolution
 * x NCHW, w OIHW (CI = C/G input channels per group, Og = O/G outputs per group),
 * y N O HO WO. All three ops are implicit GEMMs per group (no im2col buffer):
 * the patch matrix is gathered on the fly by the loaders below, tile by tile.
 * The shape carries, besides the sizes, every divisor the index arithmetic needs
 * (D: SfDivLit or SfFastDiv, see "divisors"): ntl (column tiles of the op's GEMM),
 * HOWO = HO*WO, WO, HW = H*W, W, KK = KH*KW, KW, SH, SW, and for grad-weight's
 * split-K S (splits) with kper (reduction elements per split). The field order
 * is the kernel-argument order of the library kernels (cuda_library.CONV_ARGS). */
template <class I, class D> struct SfConvShape {
  I N, C, H, W, O, KH, KW, SH, SW, PH, PW, DH, DW, G, HO, WO, kper;
  D ntl, HOWO_, WO_, HW_, W_, KK_, KW_, SH_, SW_, S_;
};

/* conv2d B operand: patches[r][q], r = (ci, ki, kj) < CI*KH*KW, q = (img, ho, wo) <
 * N*HO*WO; mapping !KFAST (q fastest: neighbouring threads read neighbouring wo). */
template <class T, class I, int BN, int BK, int NT, class S> struct SfConvFwdB {
  static constexpr int P = BN * BK / NT;
  const T* __restrict__ xb;     /* this thread's image and group */
  I h0, w0, R;
  bool qv;
  const S* s;
  SF_MEM void init(const T* __restrict__ x, const S& sh, I g, I n0) {
    s = &sh;
    const I q = n0 + threadIdx.x % BN;
    qv = q < sh.N * sh.HOWO_.d;
    const I img = qv ? sh.HOWO_.div(q) : 0, p = q - img * sh.HOWO_.d;
    xb = x + (img * sh.C + g * (sh.C / sh.G)) * sh.H * sh.W;
    const I ph = sh.WO_.div(p);
    h0 = ph * sh.SH - sh.PH;
    w0 = (p - ph * sh.WO) * sh.SW - sh.PW;
    R = (sh.C / sh.G) * sh.KK_.d;
  }
  SF_MEM void load(int t, T (&r)[P]) const {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < P; i++) {
      const I k = (I)t * BK + (tid + i * NT) / BN;
      const I ci = s->KK_.div(k), kr = k - ci * s->KK_.d;
      const I ki = s->KW_.div(kr);
      const I h = h0 + ki * s->DH, w = w0 + (kr - ki * s->KW) * s->DW;
      const bool v = qv && k < R && h >= 0 && h < s->H && w >= 0 && w < s->W;
      r[i] = v ? xb[(ci * s->H + h) * s->W + w] : (T)0;
    }
  }
};

/* y[n, g*Og + o] = w[g] (Og x R) @ patches (R x N*P). Grid: x over tiles, z over groups. */
template <class T, class I, int BM, int BN, int BK, int TM, int TN, class S>
SF_DEV void sf_conv2d(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, const S& s) {
  constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY;
  const I CI = s.C / s.G, Og = s.O / s.G, R = CI * s.KK_.d, P = s.HOWO_.d, NQ = s.N * P;
  const I mt = (Og + BM - 1) / BM;
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  for (I g = blockIdx.z; g < s.G; g += gridDim.z)
    for (I tile = blockIdx.x; tile < mt * s.ntl.d; tile += gridDim.x) {
      const I tm = s.ntl.div(tile);
      const I m0 = tm * BM, n0 = (tile - tm * s.ntl.d) * BN;
      const SfMatLoader<T, I, BM, BK, NT, true> la{w + g * Og * R, Og, R, 1, 0, R, m0};
      SfConvFwdB<T, I, BN, BK, NT, S> lb;
      lb.init(x, s, g, n0);
      T acc[TM][TN];
      sf_gemm_tile<T, BM, BN, BK, TM, TN, true, false>(la, lb, (int)((R + BK - 1) / BK), acc);
#pragma unroll
      for (int j = 0; j < TN; j++) {
        const I q = n0 + tx * TN + j;
        if (q >= NQ) continue;
        const I img = s.HOWO_.div(q);
        T* yq = y + img * s.O * P + g * Og * P + (q - img * P);
#pragma unroll
        for (int i = 0; i < TM; i++) {
          const I o = m0 + ty * TM + i;
          if (o < Og) yq[o * P] = acc[i][j];
        }
      }
    }
}

/* conv2d_grad_input A operand: wt[ci][r] = w[g*Og + o][ci][ki][kj], r = (o, ki, kj); KFAST. */
template <class T, class I, int BM, int BK, int NT, class S> struct SfConvGiA {
  static constexpr int P = BM * BK / NT;
  const T* __restrict__ wg;
  I CI, R, m0;
  const S* s;
  SF_MEM void load(int t, T (&r)[P]) const {
    const int tid = threadIdx.x;
    const I k = (I)t * BK + tid % BK;
    const I o = s->KK_.div(k);
    const T* wk = wg + o * CI * s->KK_.d + (k - o * s->KK_.d);
#pragma unroll
    for (int i = 0; i < P; i++) {
      const I ci = m0 + (tid + i * NT) / BK;
      r[i] = (k < R && ci < CI) ? wk[ci * s->KK_.d] : (T)0;
    }
  }
};

/* conv2d_grad_input B operand: gy[img][g*Og + o][ho][wo] for r = (o, ki, kj) and
 * q = (img, h, w) where h = ho*SH - PH + ki*DH (likewise w); 0 where no such ho/wo. */
template <class T, class I, int BN, int BK, int NT, class S> struct SfConvGiB {
  static constexpr int P = BN * BK / NT;
  const T* __restrict__ gb;
  I th, tw, R;
  bool qv;
  const S* s;
  SF_MEM void init(const T* __restrict__ gy, const S& sh, I g, I n0) {
    s = &sh;
    const I q = n0 + threadIdx.x % BN;
    qv = q < sh.N * sh.HW_.d;
    const I img = qv ? sh.HW_.div(q) : 0, p = q - img * sh.HW_.d;
    gb = gy + (img * sh.O + g * (sh.O / sh.G)) * sh.HO * sh.WO;
    const I ph = sh.W_.div(p);
    th = ph + sh.PH;
    tw = (p - ph * sh.W) + sh.PW;
    R = (sh.O / sh.G) * sh.KK_.d;
  }
  SF_MEM void load(int t, T (&r)[P]) const {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < P; i++) {
      const I k = (I)t * BK + (tid + i * NT) / BN;
      const I o = s->KK_.div(k), kr = k - o * s->KK_.d;
      const I ki = s->KW_.div(kr);
      const I a = th - ki * s->DH, b = tw - (kr - ki * s->KW) * s->DW;
      /* the divisors need n >= 0: a negative a or b has no ho / wo anyway */
      const I ho = s->SH_.div(a > 0 ? a : 0), wo = s->SW_.div(b > 0 ? b : 0);
      const bool v = qv && k < R && a >= 0 && b >= 0 && a - ho * s->SH == 0 && b - wo * s->SW == 0 &&
                     ho < s->HO && wo < s->WO;
      r[i] = v ? gb[(o * s->HO + ho) * s->WO + wo] : (T)0;
    }
  }
};

/* dx[n, g*CI + ci, h, w] = sum_r wt[ci][r] * gyg[r][(n, h, w)]: a gather (transposed
 * convolution), every dx element written once. Grid: x over tiles, z over groups. */
template <class T, class I, int BM, int BN, int BK, int TM, int TN, class S>
SF_DEV void sf_conv2d_grad_input(const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ dx,
                                 const S& s) {
  constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY;
  const I CI = s.C / s.G, Og = s.O / s.G, R = Og * s.KK_.d, HW = s.HW_.d, NQ = s.N * HW;
  const I mt = (CI + BM - 1) / BM;
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  for (I g = blockIdx.z; g < s.G; g += gridDim.z)
    for (I tile = blockIdx.x; tile < mt * s.ntl.d; tile += gridDim.x) {
      const I tm = s.ntl.div(tile);
      const I m0 = tm * BM, n0 = (tile - tm * s.ntl.d) * BN;
      const SfConvGiA<T, I, BM, BK, NT, S> la{w + g * Og * CI * s.KK_.d, CI, R, m0, &s};
      SfConvGiB<T, I, BN, BK, NT, S> lb;
      lb.init(gy, s, g, n0);
      T acc[TM][TN];
      sf_gemm_tile<T, BM, BN, BK, TM, TN, true, false>(la, lb, (int)((R + BK - 1) / BK), acc);
#pragma unroll
      for (int j = 0; j < TN; j++) {
        const I q = n0 + tx * TN + j;
        if (q >= NQ) continue;
        const I img = s.HW_.div(q);
        T* dq = dx + img * s.C * HW + g * CI * HW + (q - img * HW);
#pragma unroll
        for (int i = 0; i < TM; i++) {
          const I ci = m0 + ty * TM + i;
          if (ci < CI) dq[ci * HW] = acc[i][j];
        }
      }
    }
}

/* conv2d_grad_weight A operand: gyg[o][q] = gy[img][g*Og + o][p], q = (img, p); KFAST. */
template <class T, class I, int BM, int BK, int NT, class S> struct SfConvGwA {
  static constexpr int P = BM * BK / NT;
  const T* __restrict__ gg;     /* gy + g*Og*HO*WO */
  I Og, OP, kbeg, kend, m0;
  const S* s;
  SF_MEM void load(int t, T (&r)[P]) const {
    const int tid = threadIdx.x;
    const I q = kbeg + (I)t * BK + tid % BK;
    const I img = s->HOWO_.div(q);
    const T* gq = gg + img * OP + (q - img * s->HOWO_.d);
#pragma unroll
    for (int i = 0; i < P; i++) {
      const I o = m0 + (tid + i * NT) / BK;
      r[i] = (q < kend && o < Og) ? gq[o * s->HOWO_.d] : (T)0;
    }
  }
};

/* conv2d_grad_weight B operand: patches[q][r] (k = q, o = r); KFAST: the thread's
 * P columns r are fixed for the whole reduction, decoded once. */
template <class T, class I, int BN, int BK, int NT, class S> struct SfConvGwB {
  static constexpr int P = BN * BK / NT;
  const T* __restrict__ xg;     /* x + g*CI*H*W */
  I coff[P], dh[P], dw[P];
  bool rv[P];
  I kbeg, kend;
  const S* s;
  SF_MEM void init(const T* __restrict__ x, const S& sh, I g, I n0, I kb, I ke) {
    s = &sh;
    kbeg = kb;
    kend = ke;
    const I CI = sh.C / sh.G, KK = sh.KK_.d;
    xg = x + g * CI * sh.H * sh.W;
#pragma unroll
    for (int i = 0; i < P; i++) {
      const I r = n0 + (threadIdx.x + i * NT) / BK;
      rv[i] = r < CI * KK;
      const I ci = sh.KK_.div(r), kr = r - ci * KK;
      const I ki = sh.KW_.div(kr);
      coff[i] = ci * sh.H * sh.W;
      dh[i] = ki * sh.DH - sh.PH;
      dw[i] = (kr - ki * sh.KW) * sh.DW - sh.PW;
    }
  }
  SF_MEM void load(int t, T (&r)[P]) const {
    const I q = kbeg + (I)t * BK + threadIdx.x % BK;
    const I img = s->HOWO_.div(q), p = q - img * s->HOWO_.d;
    const bool qv = q < kend;
    const T* xq = xg + img * s->C * s->H * s->W;
    const I ph = s->WO_.div(p);
    const I hb = ph * s->SH, wb = (p - ph * s->WO) * s->SW;
#pragma unroll
    for (int i = 0; i < P; i++) {
      const I h = hb + dh[i], w = wb + dw[i];
      const bool v = qv && rv[i] && h >= 0 && h < s->H && w >= 0 && w < s->W;
      r[i] = v ? xq[coff[i] + h * s->W + w] : (T)0;
    }
  }
};

/* dw[g*Og + o][r] = sum over q = (img, ho, wo) of gyg[o][q] * patches[q][r], the
 * reduction (N*HO*WO long) split into S contiguous ranges of kper elements (a
 * multiple of BK): grid z = G*S, z = g*S + split. S == 1 writes dw directly;
 * else each split writes its partial dw into part + split*O*R and
 * sf_sum_partials adds them in split order (deterministic two-stage split-K). */
template <class T, class I, int BM, int BN, int BK, int TM, int TN, class S>
SF_DEV void sf_conv2d_grad_weight(const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ out,
                                  const S& s) {
  constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY;
  const I CI = s.C / s.G, Og = s.O / s.G, R = CI * s.KK_.d, HOWO = s.HOWO_.d, NQ = s.N * HOWO;
  const I mt = (Og + BM - 1) / BM, kper = s.kper;
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  for (I z = blockIdx.z; z < s.G * s.S_.d; z += gridDim.z) {
    const I g = s.S_.div(z), sp = z - g * s.S_.d;
    const I kb = sp * kper, ke = kb + kper < NQ ? kb + kper : NQ;
    T* og = out + sp * s.O * R + g * Og * R;
    for (I tile = blockIdx.x; tile < mt * s.ntl.d; tile += gridDim.x) {
      const I tm = s.ntl.div(tile);
      const I m0 = tm * BM, n0 = (tile - tm * s.ntl.d) * BN;
      const SfConvGwA<T, I, BM, BK, NT, S> la{gy + g * Og * HOWO, Og, s.O * HOWO, kb, ke, m0, &s};
      SfConvGwB<T, I, BN, BK, NT, S> lb;
      lb.init(x, s, g, n0, kb, ke);
      T acc[TM][TN];
      sf_gemm_tile<T, BM, BN, BK, TM, TN, true, true>(la, lb, (int)((ke - kb + BK - 1) / BK), acc);
#pragma unroll
      for (int i = 0; i < TM; i++) {
        const I o = m0 + ty * TM + i;
        if (o >= Og) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
          const I r = n0 + tx * TN + j;
          if (r < R) og[o * R + r] = acc[i][j];
        }
      }
    }
  }
}

/* out[i] = sum_{s < S} part[s*count + i], s ascending. */
template <class T, class I>
SF_DEV void sf_sum_partials(const T* __restrict__ part, T* __restrict__ out, I count, int S) {
  SF_GRID_LOOP(I, i, count) {
    T acc = part[i];
    for (int s = 1; s < S; s++) acc += part[(I)s * count + i];
    out[i] = acc;
  }
}

/* ------------------------------------------------------------------ softmax family
 * Rows over the axis of length n: row r of the [outer, n, inner] view starts at
 * (r / inner)*n*inner + r % inner, its elements inner apart. Per row:
 * shift = the max if finite, else 0 (NaN rows: 0), then exactly the formulas of
 * the C runtime: softmax = exp(x - sh) / sum, log_softmax = (x - sh) - log(sum),
 * logsumexp = sh + log(sum), xent = -sum(t * ((x - sh) - log(sum))).
 * KIND: 0 softmax, 1 log_softmax, 2 logsumexp, 3 softmax_xent. Outputs of kinds
 * 2, 3 are [outer, inner] (row r). */

/* One warp (or a group of LANES = 2..32 lanes of a warp, for short rows) per row, the
 * row cached in registers (PER = ceil(n/LANES) values a lane). blockDim.x = 32 * warps.
 * The loop over rows is warp-uniform (a group past the last row computes on -inf and
 * stores nothing), so the full-mask shuffles are always legal. */
template <int LANES, class T> SF_DEV T sf_group_sum(T v) {
#pragma unroll
  for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(SF_FULL, v, o);
  return v;
}
template <int LANES, class T> SF_DEV T sf_group_max_nan(T v) {
#pragma unroll
  for (int o = LANES / 2; o > 0; o >>= 1) v = sf_max_nan(v, (T)__shfl_xor_sync(SF_FULL, v, o));
  return v;
}

template <int KIND, class T, class I, int PER, int LANES>
SF_DEV void sf_rowwise_warp(const T* __restrict__ x, const T* __restrict__ t, T* __restrict__ y, I rows, I n,
                            I inner) {
  constexpr int RPW = 32 / LANES;                      /* rows per warp */
  const int lane = threadIdx.x & (LANES - 1);
  const I wpb = blockDim.x >> 5;
  for (I r0 = ((I)blockIdx.x * wpb + (threadIdx.x >> 5)) * RPW; r0 < rows; r0 += (I)gridDim.x * wpb * RPW) {
    const I row = r0 + (I)((threadIdx.x & 31) / LANES);
    const bool live = row < rows;
    const I base = (row / inner) * n * inner + row % inner;
    T v[PER];
    T m = (T)-INFINITY;
#pragma unroll
    for (int j = 0; j < PER; j++) {
      const I k = lane + LANES * j;
      v[j] = live && k < n ? x[base + k * inner] : (T)-INFINITY;
      m = sf_max_nan(m, v[j]);
    }
    m = sf_group_max_nan<LANES>(m);
    const T sh = sf_isfinite(m) ? m : (T)0;
    T s = 0;
#pragma unroll
    for (int j = 0; j < PER; j++) {
      if (lane + LANES * j < n) {
        const T e = sf_exp(v[j] - sh);
        s += e;
        if (KIND == 0) v[j] = e;
      }
    }
    s = sf_group_sum<LANES>(s);
    if (KIND == 0) {
#pragma unroll
      for (int j = 0; j < PER; j++) {
        const I k = lane + LANES * j;
        if (live && k < n) y[base + k * inner] = v[j] / s;
      }
    } else {
      const T lse = sf_log(s);
      if (KIND == 1) {
#pragma unroll
        for (int j = 0; j < PER; j++) {
          const I k = lane + LANES * j;
          if (live && k < n) y[base + k * inner] = (v[j] - sh) - lse;
        }
      } else if (KIND == 2) {
        if (live && lane == 0) y[row] = sh + lse;
      } else {
        T a = 0;
#pragma unroll
        for (int j = 0; j < PER; j++) {
          const I k = lane + LANES * j;
          if (live && k < n) a += t[base + k * inner] * ((v[j] - sh) - lse);
        }
        a = sf_group_sum<LANES>(a);
        if (live && lane == 0) y[row] = -a;
      }
    }
  }
}

/* One block per row (long rows): three passes over global memory (L2-resident). */
template <int KIND, class T, class I>
SF_DEV void sf_rowwise_block(const T* __restrict__ x, const T* __restrict__ t, T* __restrict__ y, I rows, I n,
                             I inner) {
  __shared__ T red[33];
  for (I row = blockIdx.x; row < rows; row += gridDim.x) {
    const I base = (row / inner) * n * inner + row % inner;
    const T* xr = x + base;
    T m = (T)-INFINITY;
    for (I k = threadIdx.x; k < n; k += blockDim.x) m = sf_max_nan(m, xr[k * inner]);
    m = sf_block_max_nan(m, red);
    const T sh = sf_isfinite(m) ? m : (T)0;
    T s = 0;
    for (I k = threadIdx.x; k < n; k += blockDim.x) s += sf_exp(xr[k * inner] - sh);
    s = sf_block_sum(s, red);
    if (KIND == 0) {
      for (I k = threadIdx.x; k < n; k += blockDim.x) y[base + k * inner] = sf_exp(xr[k * inner] - sh) / s;
    } else {
      const T lse = sf_log(s);
      if (KIND == 1) {
        for (I k = threadIdx.x; k < n; k += blockDim.x) y[base + k * inner] = (xr[k * inner] - sh) - lse;
      } else if (KIND == 2) {
        if (threadIdx.x == 0) y[row] = sh + lse;
      } else {
        T a = 0;
        for (I k = threadIdx.x; k < n; k += blockDim.x) a += t[base + k * inner] * ((xr[k * inner] - sh) - lse);
        a = sf_block_sum(a, red);
        if (threadIdx.x == 0) y[row] = -a;
      }
    }
  }
}

/* One thread per column (strided rows, inner > 1, many columns): neighbouring
 * threads read neighbouring columns (coalesced). */
template <int KIND, class T, class I>
SF_DEV void sf_rowwise_column(const T* __restrict__ x, const T* __restrict__ t, T* __restrict__ y, I rows, I n,
                              I inner) {
  SF_GRID_LOOP(I, row, rows) {
    const I base = (row / inner) * n * inner + row % inner;
    const T* xr = x + base;
    T m = (T)-INFINITY;
    for (I k = 0; k < n; k++) m = sf_max_nan(m, xr[k * inner]);
    const T sh = sf_isfinite(m) ? m : (T)0;
    T s = 0;
    for (I k = 0; k < n; k++) s += sf_exp(xr[k * inner] - sh);
    if (KIND == 0) {
      for (I k = 0; k < n; k++) y[base + k * inner] = sf_exp(xr[k * inner] - sh) / s;
    } else {
      const T lse = sf_log(s);
      if (KIND == 1) {
        for (I k = 0; k < n; k++) y[base + k * inner] = (xr[k * inner] - sh) - lse;
      } else if (KIND == 2) {
        y[row] = sh + lse;
      } else {
        T a = 0;
        for (I k = 0; k < n; k++) a += t[base + k * inner] * ((xr[k * inner] - sh) - lse);
        y[row] = -a;
      }
    }
  }
}

/* ------------------------------------------------------------------ pooling
 * planes = N*C; windows KH x KW, stride SH, SW, symmetric padding PH, PW. */
/* The divisors (D: SfDivLit or SfFastDiv) of the index decode: WO, HO, HW = H*W,
 * W, SH, SW; the field order is the library kernels' argument order
 * (cuda_library.POOL_ARGS). */
template <class I, class D> struct SfPoolShape {
  I planes, H, W, KH, KW, SH, SW, PH, PW, HO, WO;
  D WO_, HO_, HW_, W_, SH_, SW_;
};

/* output index i -> (plane, ho, wo) */
#define SF_POOL_OUT(s, i)                                                   \
  const I sf_q = s.WO_.div(i), wo = i - sf_q * s.WO, pl = s.HO_.div(sf_q);  \
  const I ho = sf_q - pl * s.HO
/* input index i -> (plane, h, w), hw = h*W + w */
#define SF_POOL_IN(s, i)                                                    \
  const I pl = s.HW_.div(i), hw = i - pl * s.HW_.d, h = s.W_.div(hw);       \
  const I w = hw - h * s.W

/* max over each window; padding is -inf; NaN propagates. One thread per output. */
template <class T, class I, class S>
SF_DEV void sf_max_pool2d(const T* __restrict__ x, T* __restrict__ y, const S& s) {
  SF_GRID_LOOP(I, i, s.planes * s.HO * s.WO) {
    SF_POOL_OUT(s, i);
    const T* xp = x + pl * s.H * s.W;
    T m = (T)-INFINITY;
    for (I ki = 0; ki < s.KH; ki++) {
      const I h = ho * s.SH - s.PH + ki;
      if (h < 0 || h >= s.H) continue;
      for (I kj = 0; kj < s.KW; kj++) {
        const I w = wo * s.SW - s.PW + kj;
        if (w >= 0 && w < s.W) m = sf_max_nan(m, xp[h * s.W + w]);
      }
    }
    y[i] = m;
  }
}

/* max_pool2d_grad stage 1: for each window, the plane offset h*W + w of its first
 * maximal element in row-major order (NaN counts as maximal; padding holds -inf and
 * gives -1 when chosen). */
template <class T, class I, class S>
SF_DEV void sf_max_pool2d_argmax(const T* __restrict__ x, int* __restrict__ at, const S& s) {
  SF_GRID_LOOP(I, i, s.planes * s.HO * s.WO) {
    SF_POOL_OUT(s, i);
    const T* xp = x + pl * s.H * s.W;
    T best = 0;
    int a = -1;
    bool first = true;
    for (I ki = 0; ki < s.KH; ki++) {
      const I h = ho * s.SH - s.PH + ki;
      for (I kj = 0; kj < s.KW; kj++) {
        const I w = wo * s.SW - s.PW + kj;
        const bool in = h >= 0 && h < s.H && w >= 0 && w < s.W;
        const T v = in ? xp[h * s.W + w] : (T)-INFINITY;
        if (first || (best == best && (v > best || v != v))) {
          best = v;
          a = in ? (int)(h * s.W + w) : -1;
          first = false;
        }
      }
    }
    at[i] = a;
  }
}

/* max_pool2d_grad stage 2 (gather): dx[h, w] = sum of g over the windows that contain
 * (h, w) and chose it, windows in row-major order (the order of the C runtime). */
template <class T, class I, class S>
SF_DEV void sf_max_pool2d_grad(const int* __restrict__ at, const T* __restrict__ g, T* __restrict__ dx,
                               const S& s) {
  SF_GRID_LOOP(I, i, s.planes * s.H * s.W) {
    SF_POOL_IN(s, i);
    /* windows ho with ho*SH - PH <= h <= ho*SH - PH + KH - 1 */
    const I th = h + s.PH, tw = w + s.PW;
    const I qh = s.SH_.div(th), qw = s.SW_.div(tw);
    const I ho0 = th >= s.KH ? s.SH_.div(th - s.KH) + 1 : 0, ho1 = qh < s.HO - 1 ? qh : s.HO - 1;
    const I wo0 = tw >= s.KW ? s.SW_.div(tw - s.KW) + 1 : 0, wo1 = qw < s.WO - 1 ? qw : s.WO - 1;
    const int* ap = at + pl * s.HO * s.WO;
    const T* gp = g + pl * s.HO * s.WO;
    T acc = 0;
    for (I ho = ho0; ho <= ho1; ho++)
      for (I wo = wo0; wo <= wo1; wo++)
        if (ap[ho * s.WO + wo] == (int)hw) acc += gp[ho * s.WO + wo];
    dx[i] = acc;
  }
}

/* mean over each window; padding counts as zeros; divisor KH*KW. */
template <class T, class I, class S>
SF_DEV void sf_avg_pool2d(const T* __restrict__ x, T* __restrict__ y, const S& s) {
  const T div = (T)(s.KH * s.KW);
  SF_GRID_LOOP(I, i, s.planes * s.HO * s.WO) {
    SF_POOL_OUT(s, i);
    const T* xp = x + pl * s.H * s.W;
    T acc = 0;
    for (I ki = 0; ki < s.KH; ki++) {
      const I h = ho * s.SH - s.PH + ki;
      if (h < 0 || h >= s.H) continue;
      for (I kj = 0; kj < s.KW; kj++) {
        const I w = wo * s.SW - s.PW + kj;
        if (w >= 0 && w < s.W) acc += xp[h * s.W + w];
      }
    }
    y[i] = acc / div;
  }
}

/* adjoint of avg_pool2d as a gather: dx[h, w] = sum of g / (KH*KW) over the windows
 * containing (h, w), kernel taps in row-major order (as the C runtime adds them). */
template <class T, class I, class S>
SF_DEV void sf_avg_pool2d_grad(const T* __restrict__ g, T* __restrict__ dx, const S& s) {
  const T div = (T)(s.KH * s.KW);
  SF_GRID_LOOP(I, i, s.planes * s.H * s.W) {
    SF_POOL_IN(s, i);
    const I th = h + s.PH, tw = w + s.PW;
    const I qh = s.SH_.div(th), qw = s.SW_.div(tw);
    const I ho0 = th >= s.KH ? s.SH_.div(th - s.KH) + 1 : 0, ho1 = qh < s.HO - 1 ? qh : s.HO - 1;
    const I wo0 = tw >= s.KW ? s.SW_.div(tw - s.KW) + 1 : 0, wo1 = qw < s.WO - 1 ? qw : s.WO - 1;
    const T* gp = g + pl * s.HO * s.WO;
    T acc = 0;
    for (I ho = ho1; ho >= ho0; ho--)       /* tap ki = th - ho*SH ascending */
      for (I wo = wo1; wo >= wo0; wo--) acc += gp[ho * s.WO + wo] / div;
    dx[i] = acc;
  }
}

/* ------------------------------------------------------------------ gathers, one-hot
 * Index rule of take/take_grad: negative counts from the end, then clamp into [0, n-1]. */
template <class Ii, class I> SF_DEV I sf_clamp_index(Ii v, I n) {
  if ((Ii)-1 < (Ii)0) {                               /* signed index type */
    long long i = (long long)v;
    if (i < 0) i += (long long)n;
    return (I)(i < 0 ? 0 : (i >= (long long)n ? (long long)n - 1 : i));
  }
  return (unsigned long long)v >= (unsigned long long)n ? n - 1 : (I)v;
}

/* out[p, j, q] = x[p, clamp(idx[j]), q] for x [pre, n, post], idx [m]. */
template <class T, class Ii, class I>
SF_DEV void sf_take(const T* __restrict__ x, const Ii* __restrict__ idx, T* __restrict__ out, I pre, I n, I m,
                    I post) {
  SF_GRID_LOOP(I, i, pre * m * post) {
    const I q = i % post, pj = i / post;
    const I j = pj % m, p = pj / m;
    out[i] = x[(p * n + sf_clamp_index<Ii, I>(idx[j], n)) * post + q];
  }
}

/* out [pre, n, post] = 0; out[p, clamp(idx[j]), :] += g[p, j, :] (deterministic gather).
 * One warp per (p, k, column chunk of 32*V): the warp scans idx 32 at a time, a ballot
 * marks the j with clamp(idx[j]) == k, and their g rows are added in ascending j (the
 * order of the C runtime); lanes own columns lane + 32*v of the chunk. */
template <class T, class Ii, class I, int V>
SF_DEV void sf_take_grad(const T* __restrict__ g, const Ii* __restrict__ idx, T* __restrict__ out, I pre, I n,
                         I m, I post) {
  const int lane = threadIdx.x & 31;
  const I wpb = blockDim.x >> 5;
  const I nq = (post + 32 * V - 1) / (32 * V);
  for (I wi = (I)blockIdx.x * wpb + (threadIdx.x >> 5); wi < pre * n * nq; wi += (I)gridDim.x * wpb) {
    const I c = wi % nq, pk = wi / nq;
    const I k = pk % n, p = pk / n;
    const I q0 = c * 32 * V + lane;
    T acc[V];
#pragma unroll
    for (int v = 0; v < V; v++) acc[v] = 0;
    const T* gp = g + p * m * post + q0;
    for (I j0 = 0; j0 < m; j0 += 32) {
      const bool hit = j0 + lane < m && sf_clamp_index<Ii, I>(idx[j0 + lane], n) == k;
      unsigned mask = __ballot_sync(SF_FULL, hit);
      while (mask) {
        const int b = __ffs((int)mask) - 1;
        mask &= mask - 1;
        const T* gj = gp + (j0 + b) * post;
#pragma unroll
        for (int v = 0; v < V; v++)
          if (q0 + 32 * v < post) acc[v] += gj[32 * v];
      }
    }
    T* op = out + (p * n + k) * post + q0;
#pragma unroll
    for (int v = 0; v < V; v++)
      if (q0 + 32 * v < post) op[32 * v] = acc[v];
  }
}

/* out[j, d] = (idx[j] == d); an index outside [0, depth) gives an all-zero row. */
template <class T, class Ii, class I>
SF_DEV void sf_one_hot(const Ii* __restrict__ idx, T* __restrict__ out, I m, I depth) {
  SF_GRID_LOOP(I, i, m * depth) {
    const Ii v = idx[i / depth];
    const bool in = !((Ii)-1 < (Ii)0 && (long long)v < 0) && (unsigned long long)v < (unsigned long long)depth;
    out[i] = (in && (I)v == i % depth) ? (T)1 : (T)0;
  }
}

/* ------------------------------------------------------------------ argmax / argmin
 * over the axis of length n of [outer, n, inner] -> int32 [outer, inner]; first
 * occurrence wins; a NaN counts as the extreme (the first NaN), as numpy.
 * sf_arg_better: whether candidate (v, i) beats (b, j) -- order-independent, so any
 * reduction tree gives the sequential answer. MAX: argmax, else argmin. */
template <bool MAX, class T> SF_DEV bool sf_arg_better(T v, int i, T b, int j) {
  if (b != b) return v != v && i < j;
  if (v != v) return true;
  if (MAX ? v > b : v < b) return true;
  return v == b && i < j;
}

/* one thread per column (inner > 1, or short rows) */
template <bool MAX, class T, class I>
SF_DEV void sf_arg_column(const T* __restrict__ x, int* __restrict__ y, I cols, I n, I inner) {
  SF_GRID_LOOP(I, c, cols) {
    const T* xc = x + (c / inner) * n * inner + c % inner;
    T b = xc[0];
    int at = 0;
    for (I k = 1; k < n; k++) {
      const T v = xc[k * inner];
      if (b == b && ((MAX ? v > b : v < b) || v != v)) {
        b = v;
        at = (int)k;
      }
    }
    y[c] = at;
  }
}

/* one warp per row (contiguous rows) */
template <bool MAX, class T, class I>
SF_DEV void sf_arg_warp(const T* __restrict__ x, int* __restrict__ y, I rows, I n) {
  const int lane = threadIdx.x & 31;
  const I wpb = blockDim.x >> 5;
  for (I row = (I)blockIdx.x * wpb + (threadIdx.x >> 5); row < rows; row += (I)gridDim.x * wpb) {
    const T* xr = x + row * n;
    T b = lane < n ? xr[lane] : xr[0];
    int at = lane < n ? lane : 0;
    for (I k = lane + 32; k < n; k += 32) {
      const T v = xr[k];
      if (sf_arg_better<MAX>(v, (int)k, b, at)) {
        b = v;
        at = (int)k;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const T v = __shfl_xor_sync(SF_FULL, b, o);
      const int j = __shfl_xor_sync(SF_FULL, at, o);
      if (sf_arg_better<MAX>(v, j, b, at)) {
        b = v;
        at = j;
      }
    }
    if (lane == 0) y[row] = at;
  }
}

/* one block per row (few long rows, e.g. axis=None) */
template <bool MAX, class T, class I>
SF_DEV void sf_arg_block(const T* __restrict__ x, int* __restrict__ y, I rows, I n) {
  __shared__ T sb[32];
  __shared__ int sa[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (I row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    const I k0 = threadIdx.x < n ? (I)threadIdx.x : 0;
    T b = xr[k0];
    int at = (int)k0;
    for (I k = k0 + blockDim.x; k < n; k += blockDim.x) {
      const T v = xr[k];
      if (sf_arg_better<MAX>(v, (int)k, b, at)) {
        b = v;
        at = (int)k;
      }
    }
    for (int pass = 0; pass < 2; pass++) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const T v = __shfl_xor_sync(SF_FULL, b, o);
        const int j = __shfl_xor_sync(SF_FULL, at, o);
        if (sf_arg_better<MAX>(v, j, b, at)) {
          b = v;
          at = j;
        }
      }
      if (pass == 1) break;
      if (lane == 0) {
        sb[warp] = b;
        sa[warp] = at;
      }
      __syncthreads();
      b = sb[lane < nw ? lane : 0];
      at = sa[lane < nw ? lane : 0];
      __syncthreads();
    }
    if (threadIdx.x == 0) y[row] = at;
  }
}

/* ------------------------------------------------------------------ random
 * The stream of symfuse/ir/ops/random.py: element i uses counter (lo32(i), hi32(i),
 * salt, 0) and key (seed, 0x53594D46) of Philox4x32-10; the first two output words. */
SF_DEV void sf_philox2(uint64_t i, uint32_t salt, uint32_t seed, uint32_t& x0, uint32_t& x1) {
  uint32_t c0 = (uint32_t)i, c1 = (uint32_t)(i >> 32), c2 = salt, c3 = 0;
  uint32_t k0 = seed, k1 = 0x53594D46u;
#pragma unroll
  for (int r = 0; r < 10; r++) {
    if (r) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  x0 = c0;
  x1 = c1;
}

SF_DEV float sf_unit24(uint32_t x) { return (float)(x >> 8) * 5.9604644775390625e-8f; /* 2^-24 */ }

SF_DEV float sf_normal_f32(uint32_t x0, uint32_t x1) {
  const float u1 = (float)((x0 >> 8) + 1u) * 5.9604644775390625e-8f;
  const float u2 = (float)(x1 >> 8) * 5.9604644775390625e-8f;
  const float a = __fmul_rn(-2.0f, logf(u1));
  const float b = __fmul_rn(6.2831855f, u2);
  return __fmul_rn(sqrtf(a), cosf(b));
}

template <class T, class I>
SF_DEV void sf_random_uniform(const uint32_t seed, uint32_t salt, T* __restrict__ out, I size) {
  SF_GRID_LOOP(I, i, size) {
    uint32_t x0, x1;
    sf_philox2((uint64_t)i, salt, seed, x0, x1);
    out[i] = (T)sf_unit24(x0);
  }
}

template <class T, class I>
SF_DEV void sf_random_normal(const uint32_t seed, uint32_t salt, T* __restrict__ out, I size) {
  SF_GRID_LOOP(I, i, size) {
    uint32_t x0, x1;
    sf_philox2((uint64_t)i, salt, seed, x0, x1);
    out[i] = (T)sf_normal_f32(x0, x1);
  }
}

/* out[i] = uniform_i < p[broadcast(i)]: p's offset for output element i is
 * sum_k idx_k(i) * pst[k] over the ND output dims oshape. */
template <class T, class P, class I, int ND>
SF_DEV void sf_random_bernoulli(const uint32_t seed, uint32_t salt, const P* __restrict__ p, T* __restrict__ out,
                                I size, const I (&oshape)[ND], const I (&pst)[ND]) {
  SF_GRID_LOOP(I, i, size) {
    I q = i, po = 0;
#pragma unroll
    for (int k = ND - 1; k > 0; k--) {
      po += (q % oshape[k]) * pst[k];
      q /= oshape[k];
    }
    po += q * pst[0];
    uint32_t x0, x1;
    sf_philox2((uint64_t)i, salt, seed, x0, x1);
    out[i] = (double)sf_unit24(x0) < (double)p[po] ? (T)1 : (T)0;
  }
}

#endif /* SYMFUSE_CUDA_RUNTIME */
