/* symfuse cuda-emu: run unmodified CUDA kernel source on the CPU.
 *
 * Force-included (g++ -include emu.h) before a CUDA translation unit, which is
 * then compiled as C++17 into a shared object. symfuse/runtime/cuda_emu.py
 * appends one launch trampoline per kernel and calls it with ctypes.
 *
 * Execution model
 *   - Blocks run one after another on the launching OS thread; launches are
 *     serialised process-wide (the fiber pool's mutex). Results are therefore
 *     deterministic, and atomics are plain read-modify-writes.
 *   - The threads of a block are cooperative fibers. A fiber runs thread after
 *     thread to completion as plain calls, and only parks its thread when that
 *     thread waits at a barrier (__syncthreads, __syncwarp, shuffles, votes);
 *     so a kernel without barriers costs one indirect call per thread and one
 *     context switch per block. Fiber stacks come from a pool shared by every
 *     module of the process and are reused across blocks and launches.
 *   - Barriers are checked: a thread that exits while others wait at a barrier,
 *     threads of one block meeting at different __syncthreads() sites, a warp
 *     op waiting for an exited lane, mismatched warp masks, and any deadlock
 *     end the launch with an error message (sf_emu_error()) instead of a hang.
 *
 * Conventions for the CUDA source (see also cuda_emu.py)
 *   - Kernels are `__global__ void name(...)`, usually `extern "C"`.
 *   - Dynamic shared memory: `extern __shared__ T name[];` is rewritten by
 *     cuda_emu.py; kernels may instead write SF_DYNAMIC_SHARED(T, name), which a
 *     CUDA prelude defines as `extern __shared__ __align__(16) T name[]`.
 *   - No CUDA headers (cuda_fp16.h, cooperative_groups.h, ...), no inline PTX,
 *     no __half. __CUDACC__ and __CUDA_ARCH__ stay undefined; SYMFUSE_CUDA_EMU
 *     is 1, so `#if __CUDA_ARCH__ >= 800` takes the portable path.
 *   - Math: libm precision everywhere; the fast intrinsics (__expf, __fdividef,
 *     ...) are the exact functions, and only the _rn rounding variants exist.
 */
#ifndef SYMFUSE_CUDA_EMU_H
#define SYMFUSE_CUDA_EMU_H
#define SYMFUSE_CUDA_EMU 1

#include <math.h>      /* the C++ wrapper: float overloads (tanh(float), ...) in the global namespace */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <limits.h>
#include <time.h>
#include <assert.h>
#include <pthread.h>
#include <sys/mman.h>
#include <type_traits>
#if !defined(__x86_64__) || defined(SF_EMU_UCONTEXT)
#include <ucontext.h>
#define SF_EMU_USE_UCONTEXT 1
#endif

/* ------------------------------------------------------------ qualifiers */
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __forceinline__ inline __attribute__((always_inline))
/* empty, not __attribute__((noinline)): libstdc++ writes __attribute__((__noinline__)) */
#define __noinline__
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
/* __restrict__ is a g++ keyword already. */
/* Static shared memory: `static` gives one instance per kernel (per template
 * instantiation), which is per block because a block's threads are fibers on one
 * OS thread and blocks never interleave (launches are serialised). Were blocks
 * spread over OS threads, this would have to be `static thread_local`.
 * cuda_emu.py rewrites `static __shared__` (valid CUDA) to `__shared__`. */
#define __shared__ static
#define SF_DYNAMIC_SHARED(T, name) T* const name = reinterpret_cast<T*>(::sf_emu::dyn_smem)
#if !defined(__clang__) && !defined(__builtin_assume)
#define __builtin_assume(x) ((void)0)
#endif

/* ---------------------------------------------------------- vector types
 * Layout and alignment as in CUDA's vector_types.h (2- and 4-vectors aligned
 * to their size, capped at 16; 1- and 3-vectors to the element). */
#define SF_VEC1(T, N) struct __attribute__((aligned(sizeof(T)))) N##1 { T x; }; \
  static inline N##1 make_##N##1(T x) { N##1 r; r.x = x; return r; }
#define SF_VEC2(T, N) struct __attribute__((aligned(2 * sizeof(T) < 16 ? 2 * sizeof(T) : 16))) N##2 { T x, y; }; \
  static inline N##2 make_##N##2(T x, T y) { N##2 r; r.x = x; r.y = y; return r; }
#define SF_VEC3(T, N) struct N##3 { T x, y, z; }; \
  static inline N##3 make_##N##3(T x, T y, T z) { N##3 r; r.x = x; r.y = y; r.z = z; return r; }
#define SF_VEC4(T, N) struct __attribute__((aligned(4 * sizeof(T) < 16 ? 4 * sizeof(T) : 16))) N##4 { T x, y, z, w; }; \
  static inline N##4 make_##N##4(T x, T y, T z, T w) { N##4 r; r.x = x; r.y = y; r.z = z; r.w = w; return r; }
#define SF_VEC(T, N) SF_VEC1(T, N) SF_VEC2(T, N) SF_VEC3(T, N) SF_VEC4(T, N)
SF_VEC(signed char, char)
SF_VEC(unsigned char, uchar)
SF_VEC(short, short)
SF_VEC(unsigned short, ushort)
SF_VEC(int, int)
SF_VEC(unsigned int, uint)
SF_VEC(long, long)
SF_VEC(unsigned long, ulong)
SF_VEC(long long, longlong)
SF_VEC(unsigned long long, ulonglong)
SF_VEC(float, float)
SF_VEC(double, double)
#undef SF_VEC
#undef SF_VEC1
#undef SF_VEC2
#undef SF_VEC3
#undef SF_VEC4

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

/* ------------------------------------------------------ built-in variables
 * Plain statics of this translation unit: set by the scheduler before it runs
 * or resumes a thread, so kernel code reads them as ordinary globals. */
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static constexpr int warpSize = 32;

/* ------------------------------------------------------------- min / max
 * CUDA's overloads. Non-template, so they also win over std::min/max when a
 * source says `using namespace std`. */
#define SF_MINMAX(T, MIN, MAX) \
  static inline T min(T a, T b) { return MIN; } \
  static inline T max(T a, T b) { return MAX; }
SF_MINMAX(int, a < b ? a : b, a > b ? a : b)
SF_MINMAX(unsigned int, a < b ? a : b, a > b ? a : b)
SF_MINMAX(long, a < b ? a : b, a > b ? a : b)
SF_MINMAX(unsigned long, a < b ? a : b, a > b ? a : b)
SF_MINMAX(long long, a < b ? a : b, a > b ? a : b)
SF_MINMAX(unsigned long long, a < b ? a : b, a > b ? a : b)
SF_MINMAX(float, fminf(a, b), fmaxf(a, b))
SF_MINMAX(double, fmin(a, b), fmax(a, b))
#undef SF_MINMAX
static inline unsigned int min(int a, unsigned int b) { return min((unsigned int)a, b); }
static inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned int)b); }
static inline unsigned int max(int a, unsigned int b) { return max((unsigned int)a, b); }
static inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned int)b); }
static inline long long min(long long a, int b) { return min(a, (long long)b); }
static inline long long min(int a, long long b) { return min((long long)a, b); }
static inline long long max(long long a, int b) { return max(a, (long long)b); }
static inline long long max(int a, long long b) { return max((long long)a, b); }
static inline double min(float a, double b) { return fmin(a, b); }
static inline double min(double a, float b) { return fmin(a, b); }
static inline double max(float a, double b) { return fmax(a, b); }
static inline double max(double a, float b) { return fmax(a, b); }
static inline unsigned int umin(unsigned int a, unsigned int b) { return min(a, b); }
static inline unsigned int umax(unsigned int a, unsigned int b) { return max(a, b); }
static inline long long llmin(long long a, long long b) { return min(a, b); }
static inline long long llmax(long long a, long long b) { return max(a, b); }
static inline unsigned long long ullmin(unsigned long long a, unsigned long long b) { return min(a, b); }
static inline unsigned long long ullmax(unsigned long long a, unsigned long long b) { return max(a, b); }

/* ---------------------------------------------------------- math functions
 * expf, tanhf, erff, log1pf, sqrtf, exp10f, sincosf, ... come from libm; these
 * are the CUDA ones libm lacks. */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
static inline double rcbrt(double x) { return 1.0 / cbrt(x); }
static inline float fdividef(float a, float b) { return a / b; }
static inline double fdivide(double a, double b) { return a / b; }
static inline float sinpif(float x) { return (float)sin(M_PI * (double)x); }
static inline float cospif(float x) { return (float)cos(M_PI * (double)x); }
static inline double sinpi(double x) { return sin(M_PI * x); }
static inline double cospi(double x) { return cos(M_PI * x); }
static inline void sincospif(float x, float* s, float* c) { *s = sinpif(x); *c = cospif(x); }
static inline void sincospi(double x, double* s, double* c) { *s = sinpi(x); *c = cospi(x); }
static inline double normcdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }
static inline float normcdff(float x) { return (float)normcdf(x); }
static inline double erfinv(double y) {
  /* Giles' single-precision start, then two Newton steps on erf (double) */
  if (!(y > -1.0 && y < 1.0)) return y == 1.0 ? INFINITY : y == -1.0 ? -INFINITY : NAN;
  double w = -log((1.0 - y) * (1.0 + y)), x;
  if (w < 5.0) {
    w -= 2.5;
    x = 2.81022636e-08; x = 3.43273939e-07 + x * w; x = -3.5233877e-06 + x * w; x = -4.39150654e-06 + x * w;
    x = 0.00021858087 + x * w; x = -0.00125372503 + x * w; x = -0.00417768164 + x * w;
    x = 0.246640727 + x * w; x = 1.50140941 + x * w;
  } else {
    w = sqrt(w) - 3.0;
    x = -0.000200214257; x = 0.000100950558 + x * w; x = 0.00134934322 + x * w; x = -0.00367342844 + x * w;
    x = 0.00573950773 + x * w; x = -0.0076224613 + x * w; x = 0.00943887047 + x * w;
    x = 1.00167406 + x * w; x = 2.83297682 + x * w;
  }
  x *= y;
  for (int i = 0; i < 2; i++) x -= (erf(x) - y) / (M_2_SQRTPI * exp(-x * x));
  return x;
}
static inline float erfinvf(float y) { return (float)erfinv(y); }
static inline double erfcinv(double y) { return erfinv(1.0 - y); }
static inline float erfcinvf(float y) { return (float)erfcinv(y); }
static inline double normcdfinv(double y) { return -M_SQRT2 * erfcinv(2.0 * y); }
static inline float normcdfinvf(float y) { return (float)normcdfinv(y); }
static inline double erfcx(double x) { return exp(x * x) * erfc(x); }
static inline float erfcxf(float x) { return (float)erfcx(x); }
static inline float norm3df(float a, float b, float c) { return sqrtf(a * a + b * b + c * c); }
static inline float rnorm3df(float a, float b, float c) { return 1.0f / norm3df(a, b, c); }
static inline float rhypotf(float a, float b) { return 1.0f / hypotf(a, b); }

/* fast-math intrinsics: exact here (the GPU's are approximate, a few ulp) */
/* glibc already declares __expf, __sinf, ... as its internal names of expf, sinf: alias */
#define __expf expf
#define __exp10f exp10f
#define __logf logf
#define __log2f log2f
#define __log10f log10f
#define __powf powf
#define __sinf sinf
#define __cosf cosf
#define __tanf tanf
#define __sincosf sincosf
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }   /* NaN -> 0 */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline double __drcp_rn(double x) { return 1.0 / x; }
static inline double __dsqrt_rn(double x) { return sqrt(x); }

/* --------------------------------------------------------------- conversions
 * Float -> integer conversions saturate like the GPU's cvt (NaN -> 0) instead
 * of being undefined as in C++. */
#define SF_F2I(F, FN, I, IN, LO, HI) \
  static inline I __##FN##2##IN##_rn(F x) { return sf_emu_sat<I, F>(nearbyint(x), LO, HI); } \
  static inline I __##FN##2##IN##_rz(F x) { return sf_emu_sat<I, F>(trunc(x), LO, HI); } \
  static inline I __##FN##2##IN##_rd(F x) { return sf_emu_sat<I, F>(floor(x), LO, HI); } \
  static inline I __##FN##2##IN##_ru(F x) { return sf_emu_sat<I, F>(ceil(x), LO, HI); }
template <class I, class F> static inline I sf_emu_sat(F r, I lo, I hi) {
  if (r != r) return 0;
  if (r <= (F)lo) return lo;
  if (r >= (F)hi) return hi;   /* (F)hi rounds up to a power of two: >= catches everything above */
  return (I)r;
}
SF_F2I(float, float, int, int, INT_MIN, INT_MAX)
SF_F2I(float, float, unsigned int, uint, 0u, UINT_MAX)
SF_F2I(float, float, long long, ll, LLONG_MIN, LLONG_MAX)
SF_F2I(float, float, unsigned long long, ull, 0ull, ULLONG_MAX)
SF_F2I(double, double, int, int, INT_MIN, INT_MAX)
SF_F2I(double, double, unsigned int, uint, 0u, UINT_MAX)
SF_F2I(double, double, long long, ll, LLONG_MIN, LLONG_MAX)
SF_F2I(double, double, unsigned long long, ull, 0ull, ULLONG_MAX)
#undef SF_F2I
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned int x) { return (float)x; }
static inline float __ll2float_rn(long long x) { return (float)x; }
static inline float __ull2float_rn(unsigned long long x) { return (float)x; }
static inline double __int2double_rn(int x) { return (double)x; }
static inline double __uint2double_rn(unsigned int x) { return (double)x; }
static inline double __ll2double_rn(long long x) { return (double)x; }
static inline double __ull2double_rn(unsigned long long x) { return (double)x; }
static inline float __double2float_rn(double x) { return (float)x; }
template <class To, class From> static inline To sf_emu_bits(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit cast between different sizes");
  To r; memcpy(&r, &v, sizeof r); return r;
}
static inline int __float_as_int(float x) { return sf_emu_bits<int>(x); }
static inline unsigned int __float_as_uint(float x) { return sf_emu_bits<unsigned int>(x); }
static inline float __int_as_float(int x) { return sf_emu_bits<float>(x); }
static inline float __uint_as_float(unsigned int x) { return sf_emu_bits<float>(x); }
static inline long long __double_as_longlong(double x) { return sf_emu_bits<long long>(x); }
static inline double __longlong_as_double(long long x) { return sf_emu_bits<double>(x); }
static inline int __double2hiint(double x) { return (int)(sf_emu_bits<unsigned long long>(x) >> 32); }
static inline int __double2loint(double x) { return (int)sf_emu_bits<unsigned long long>(x); }
static inline double __hiloint2double(int hi, int lo) {
  return sf_emu_bits<double>(((unsigned long long)(unsigned)hi << 32) | (unsigned)lo);
}

/* ---------------------------------------------------------- integer intrinsics */
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned int __brev(unsigned int x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  return __builtin_bswap32(x);
}
static inline unsigned long long __brevll(unsigned long long x) {
  return ((unsigned long long)__brev((unsigned)x) << 32) | __brev((unsigned)(x >> 32));
}
static inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
  unsigned long long v = ((unsigned long long)y << 32) | x;
  unsigned int r = 0;
  for (int i = 0; i < 4; i++) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
}
static inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
static inline int __mul24(int a, int b) {
  long long sa = (int)((unsigned)a << 8) >> 8, sb = (int)((unsigned)b << 8) >> 8;   /* sign-extend 24 bits */
  return (int)(unsigned)(sa * sb);
}
static inline unsigned int __umul24(unsigned int a, unsigned int b) { return (a & 0xFFFFFFu) * (b & 0xFFFFFFu); }
static inline int __hadd(int a, int b) { return (int)(((long long)a + b) >> 1); }
static inline int __rhadd(int a, int b) { return (int)(((long long)a + b + 1) >> 1); }
static inline unsigned int __uhadd(unsigned int a, unsigned int b) { return (unsigned)(((unsigned long long)a + b) >> 1); }
static inline unsigned int __urhadd(unsigned int a, unsigned int b) { return (unsigned)(((unsigned long long)a + b + 1) >> 1); }
static inline unsigned int __sad(int a, int b, unsigned int c) { return c + (unsigned)(a > b ? (long long)a - b : (long long)b - a); }
static inline unsigned int __usad(unsigned int a, unsigned int b, unsigned int c) { return c + (a > b ? a - b : b - a); }
static inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int s) {
  return (unsigned)(((((unsigned long long)hi << 32) | lo) << (s & 31)) >> 32);
}
static inline unsigned int __funnelshift_lc(unsigned int lo, unsigned int hi, unsigned int s) {
  return (unsigned)(((((unsigned long long)hi << 32) | lo) << (s < 32 ? s : 32)) >> 32);
}
static inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int s) {
  return (unsigned)((((unsigned long long)hi << 32) | lo) >> (s & 31));
}
static inline unsigned int __funnelshift_rc(unsigned int lo, unsigned int hi, unsigned int s) {
  return (unsigned)((((unsigned long long)hi << 32) | lo) >> (s < 32 ? s : 32));
}

/* ------------------------------------------------------ memory access hints */
template <class T> static inline T __ldg(const T* p) { return *p; }
template <class T> static inline T __ldcg(const T* p) { return *p; }
template <class T> static inline T __ldca(const T* p) { return *p; }
template <class T> static inline T __ldcs(const T* p) { return *p; }
template <class T> static inline T __ldlu(const T* p) { return *p; }
template <class T> static inline T __ldcv(const T* p) { return *p; }
template <class T> static inline void __stwb(T* p, T v) { *p = v; }
template <class T> static inline void __stcg(T* p, T v) { *p = v; }
template <class T> static inline void __stcs(T* p, T v) { *p = v; }
template <class T> static inline void __stwt(T* p, T v) { *p = v; }
/* one OS thread runs everything: fences only need to stop compiler reordering */
static inline void __threadfence() { __asm__ __volatile__("" ::: "memory"); }
static inline void __threadfence_block() { __asm__ __volatile__("" ::: "memory"); }
static inline void __threadfence_system() { __asm__ __volatile__("" ::: "memory"); }
static inline void __nanosleep(unsigned int) {}
static inline long long clock64() {
  struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------ atomics
 * Plain read-modify-writes: blocks run one at a time on one OS thread and a
 * fiber never switches inside an atomic, so nothing can interleave. */
namespace sf_emu { template <class T> struct id { typedef T type; }; }
#define SF_ATOMIC(NAME, EXPR, COND) \
  template <class T> static inline T NAME(T* a, typename sf_emu::id<T>::type v) { \
    static_assert(COND, #NAME ": unsupported type"); T old = *a; *a = (EXPR); return old; } \
  template <class T> static inline T NAME##_block(T* a, typename sf_emu::id<T>::type v) { return NAME(a, v); } \
  template <class T> static inline T NAME##_system(T* a, typename sf_emu::id<T>::type v) { return NAME(a, v); }
SF_ATOMIC(atomicAdd, old + v, std::is_arithmetic<T>::value)
SF_ATOMIC(atomicSub, old - v, std::is_integral<T>::value)
SF_ATOMIC(atomicExch, v, std::is_arithmetic<T>::value)
SF_ATOMIC(atomicMin, v < old ? v : old, std::is_integral<T>::value)
SF_ATOMIC(atomicMax, v > old ? v : old, std::is_integral<T>::value)
SF_ATOMIC(atomicAnd, old & v, std::is_integral<T>::value)
SF_ATOMIC(atomicOr, old | v, std::is_integral<T>::value)
SF_ATOMIC(atomicXor, old ^ v, std::is_integral<T>::value)
#undef SF_ATOMIC
static inline unsigned int atomicInc(unsigned int* a, unsigned int v) {
  unsigned int o = *a; *a = o >= v ? 0 : o + 1; return o;
}
static inline unsigned int atomicDec(unsigned int* a, unsigned int v) {
  unsigned int o = *a; *a = (o == 0 || o > v) ? v : o - 1; return o;
}
#define SF_T typename sf_emu::id<T>::type
template <class T> static inline T atomicCAS(T* a, SF_T cmp, SF_T v) {
  static_assert(std::is_integral<T>::value, "atomicCAS: integer types only");
  T old = *a; if (old == cmp) *a = v; return old;
}
template <class T> static inline T atomicCAS_block(T* a, SF_T c, SF_T v) { return atomicCAS(a, c, v); }
template <class T> static inline T atomicCAS_system(T* a, SF_T c, SF_T v) { return atomicCAS(a, c, v); }
#undef SF_T

/* ================================================================ scheduler */
#define SF_EMU_EXPORT extern "C" __attribute__((visibility("default"), used))

#ifndef SF_EMU_USE_UCONTEXT
/* Context switch: push the callee-saved registers, swap stack pointers, pop.
 * swapcontext also saves and restores the signal mask with a system call on
 * every switch: a 256-thread block reduction over 1M floats (9.4M park/resume
 * pairs) takes 0.35 s with this and 4.7 s with ucontext (-DSF_EMU_UCONTEXT, the
 * fallback on other architectures). MXCSR and the x87 control word are shared
 * by all fibers (nobody changes rounding modes), so not saved. */
__asm__(
    ".pushsection .text\n.p2align 4\n"
    ".globl sf_emu_swap_ctx\n.hidden sf_emu_swap_ctx\n.type sf_emu_swap_ctx,@function\n"
    "sf_emu_swap_ctx:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size sf_emu_swap_ctx, .-sf_emu_swap_ctx\n.popsection\n");
extern "C" __attribute__((visibility("hidden"))) void sf_emu_swap_ctx(void** save_sp, void* load_sp);
#endif

namespace sf_emu {

enum { kMaxThreads = 1024, kMaxWarps = 32, kMaxDynSmem = 232448 /* 227 KiB, sm_90 opt-in maximum */ };

/* Stacks are shared by every module of the process (cuda_emu.py hands each new
 * module the first one's pool): the pool's mutex serialises launches, so one
 * set of stacks serves them all and memory stays bounded by one block's worth. */
struct Pool {
  pthread_mutex_t mu;
  size_t stack_bytes;
  int n;
  char* stack[kMaxThreads];
};

struct Fiber {
  void* sp;
  char* stack;
#ifdef SF_EMU_USE_UCONTEXT
  ucontext_t uc;
#endif
};

enum Op : uint8_t { OP_SYNC, OP_IDX, OP_UP, OP_DOWN, OP_XOR, OP_BALLOT, OP_ANY, OP_ALL, OP_REDUCE_ADD,
                    OP_REDUCE_MIN, OP_REDUCE_MAX, OP_REDUCE_UMIN, OP_REDUCE_UMAX, OP_REDUCE_AND,
                    OP_REDUCE_OR, OP_REDUCE_XOR, OP_MATCH_ANY, OP_MATCH_ALL };
static const char* const op_name[] = {
    "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
    "__any_sync", "__all_sync", "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync",
    "__reduce_min_sync", "__reduce_max_sync", "__reduce_and_sync", "__reduce_or_sync", "__reduce_xor_sync",
    "__match_any_sync", "__match_all_sync"};

/* lanes parked in a warp op: their requests, then (on completion) their results */
struct Warp {
  uint32_t waiting, exited;
  uint32_t mask[32];
  uint8_t op[32];
  int32_t arg[32], width[32], line[32];
  uint64_t val[32];
};

struct Block {
  void (*fn)(void*);
  void* ctx;
  int n, next, done, first_exited;
  uint3 next_idx;                    /* threadIdx of thread `next` */
  int bar_waiting, bar_site, bar_line, bar_accum, bar_result;
  const char* bar_file;
  int bar_list[kMaxThreads];         /* threads parked at __syncthreads, in arrival order */
  int ready[kMaxThreads], rhead, rcount;   /* parked threads released by a barrier */
  Fiber* tfiber[kMaxThreads];        /* fiber a parked thread lives on */
  uint3 tidx[kMaxThreads];           /* its threadIdx (saves two divisions per resume) */
  Fiber* idle[kMaxThreads];
  int nidle;
  Warp warp[kMaxWarps];
};

static Block B;
static Fiber fibers[kMaxThreads];
static int nfibers;                  /* fibers set up in this launch */
static Fiber main_f;                 /* the launching OS thread's own stack */
static Fiber* cur;
static int cur_tid;
static Pool* pool;
static int err;
static char errmsg[8192];
alignas(128) static unsigned char dyn_smem[kMaxDynSmem];

static inline void swap_to(Fiber* from, Fiber* to) {
#ifdef SF_EMU_USE_UCONTEXT
  swapcontext(&from->uc, &to->uc);
#else
  sf_emu_swap_ctx(&from->sp, to->sp);
#endif
  __asm__ __volatile__("" ::: "memory");   /* another fiber ran meanwhile: reload everything */
}

static void fiber_entry();

static Fiber* new_fiber() {
  if (nfibers == kMaxThreads) return nullptr;
  int i = nfibers;
  if (i == pool->n) {
    size_t guard = 4096, size = pool->stack_bytes + guard;
    void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    mprotect(m, guard, PROT_NONE);   /* an overflow faults instead of corrupting the next stack */
    pool->stack[pool->n++] = (char*)m + guard;
  }
  Fiber* f = &fibers[nfibers++];
  f->stack = pool->stack[i];
  /* Stacks are page aligned, so their tops would all fall into the same cache
   * sets and evict each other at every switch: start each at another 64-byte
   * offset (barrier-heavy kernels run ~15% faster). */
  char* top = f->stack + pool->stack_bytes - (size_t)i * 64 * 37 % 4096;
#ifdef SF_EMU_USE_UCONTEXT
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack;
  f->uc.uc_stack.ss_size = pool->stack_bytes;
  f->uc.uc_link = nullptr;
  makecontext(&f->uc, fiber_entry, 0);
  (void)top;
#else
  /* six zeroed callee-saved registers, then `ret` into fiber_entry with
   * rsp = top - 8, the alignment a called function expects */
  void** sp = (void**)top;
  *--sp = nullptr;                    /* fiber_entry's return address: it never returns */
  *--sp = (void*)&fiber_entry;
  for (int r = 0; r < 6; r++) *--sp = nullptr;
  f->sp = sp;
#endif
  return f;
}

static const char* thread_str(int t, char* buf, size_t n) {
  unsigned bx = blockDim.x, by = blockDim.y;
  snprintf(buf, n, "thread (%u,%u,%u) of block (%u,%u,%u)", t % bx, (t / bx) % by, t / (bx * by), blockIdx.x,
           blockIdx.y, blockIdx.z);
  return buf;
}

static void set_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char* fmt, ...) {
  if (err) return;                  /* the first error is the cause */
  err = 1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg, sizeof errmsg, fmt, ap);
  va_end(ap);
}

/* Abandon the launch from inside a fiber: back to the scheduler, never resumed.
 * The fiber's stack is simply reused by the next launch. */
#define SF_EMU_FAIL(...) do { ::sf_emu::set_error(__VA_ARGS__); ::sf_emu::abandon(); } while (0)
__attribute__((noreturn, noinline)) static void abandon() {
  Fiber* self = cur;
  cur = &main_f;
  swap_to(self, &main_f);
  __builtin_unreachable();
}

/* Make parked thread t the running one (its threadIdx was saved by park()). */
static inline void set_thread(int t) {
  cur_tid = t;
  threadIdx = B.tidx[t];
}

static inline void push_ready(int t) { B.ready[(B.rhead + B.rcount++) & (kMaxThreads - 1)] = t; }

/* Park the running thread (its wait is recorded by the caller) and run the next
 * released thread, or return to the scheduler, which starts new threads. */
static void park() {
  Fiber* self = cur;
  B.tfiber[cur_tid] = self;
  B.tidx[cur_tid] = threadIdx;
  Fiber* f = &main_f;
  if (B.rcount) {
    int t = B.ready[B.rhead];
    B.rhead = (B.rhead + 1) & (kMaxThreads - 1);
    B.rcount--;
    f = B.tfiber[t];
    set_thread(t);
  }
  cur = f;
  swap_to(self, f);
}

static inline uint32_t lanes_present(int w) {
  int k = B.n - 32 * w;
  return k >= 32 ? 0xFFFFFFFFu : (1u << k) - 1;
}

static void fmt_lanes(char* buf, size_t n, uint32_t m) {
  size_t len = 0;
  buf[0] = 0;
  for (int l = 0; l < 32 && len + 8 < n; l++)
    if (m >> l & 1) len += snprintf(buf + len, n - len, len ? ",%d" : "%d", l);
}

/* A thread returned from the kernel while someone waits for it: report. */
__attribute__((noinline, noreturn)) static void exit_while_awaited() {
  int t = cur_tid, w = t >> 5, lane = t & 31;
  char who[96];
  Warp& W = B.warp[w];
  if (B.bar_waiting)
    SF_EMU_FAIL("divergent __syncthreads(): %s exited while %d thread(s) wait at the barrier at %s:%d",
                thread_str(t, who, sizeof who), B.bar_waiting, B.bar_file, B.bar_line);
  for (uint32_t m = W.waiting; m; m &= m - 1) {
    int j = __builtin_ctz(m);
    if (W.mask[j] >> lane & 1)
      SF_EMU_FAIL("%s (warp %d, lane %d) exited while lane %d waits for it in %s (mask 0x%08x) at line %d",
                  thread_str(t, who, sizeof who), w, lane, j, op_name[W.op[j]], W.mask[j], W.line[j]);
  }
  SF_EMU_FAIL("internal error: exit_while_awaited");
}

/* Run not-yet-started threads one after another on the current fiber; a
 * thread that never parks is just a call of the (inlined) kernel lambda. Other
 * fibers pick up the remaining threads while this one's thread is parked. */
template <class F> static void run_threads(void* body) {
  while (B.next < B.n) {
    int t = cur_tid = B.next++;
    threadIdx = B.next_idx;
    if (++B.next_idx.x == blockDim.x) {
      B.next_idx.x = 0;
      if (++B.next_idx.y == blockDim.y) { B.next_idx.y = 0; B.next_idx.z++; }
    }
    (*static_cast<F*>(body))();
    t = cur_tid;     /* unchanged, but the compiler need not know */
    if (B.done++ == 0) B.first_exited = t;
    Warp& W = B.warp[t >> 5];
    W.exited |= 1u << (t & 31);
    if (__builtin_expect(B.bar_waiting != 0 || W.waiting != 0, 0)) exit_while_awaited();
  }
}

/* A fiber's life: run threads while there are unstarted ones, then idle at
 * the scheduler until it needs another fiber. */
static void fiber_entry() {
  for (;;) {
    Fiber* self = cur;
    B.fn(B.ctx);
    B.idle[B.nidle++] = self;
    cur = &main_f;
    swap_to(self, &main_f);
  }
}

/* kind 0: __syncthreads, 1: _count, 2: _and, 3: _or */
__attribute__((noinline)) static int syncthreads(int site, const char* file, int line, int kind, int pred) {
  char who[96], who2[96];
  if (B.done)
    SF_EMU_FAIL("divergent __syncthreads() at %s:%d: %s arrives after %s exited without reaching it "
                "(an early return before a barrier?)", file, line, thread_str(cur_tid, who, sizeof who),
                thread_str(B.first_exited, who2, sizeof who2));
  if (B.bar_waiting == 0) {
    B.bar_site = site;
    B.bar_file = file;
    B.bar_line = line;
  } else if (site != B.bar_site) {
    SF_EMU_FAIL("divergent __syncthreads(): %s is at %s:%d while %d thread(s) wait at %s:%d",
                thread_str(cur_tid, who, sizeof who), file, line, B.bar_waiting, B.bar_file, B.bar_line);
  }
  B.bar_accum += kind ? (pred != 0) : 0;
  if (B.bar_waiting + 1 == B.n) {             /* last to arrive: release everyone, carry on */
    for (int i = 0; i < B.bar_waiting; i++) push_ready(B.bar_list[i]);
    B.bar_waiting = 0;
    B.bar_result = B.bar_accum;
    B.bar_accum = 0;
  } else {
    B.bar_list[B.bar_waiting++] = cur_tid;
    park();
  }
  int c = B.bar_result;   /* stays valid until every thread has arrived at the next barrier */
  return kind == 2 ? c == B.n : kind == 3 ? c != 0 : c;
}

static void complete_warp(Warp& W, int w, uint32_t m) {
  int first = __builtin_ctz(m);
  int op = W.op[first];
  for (uint32_t r = m; r; r &= r - 1) {
    int j = __builtin_ctz(r);
    if (W.mask[j] != m || W.op[j] != op) {
      char who[96];
      SF_EMU_FAIL("mismatched warp operation in warp %d of block (%u,%u,%u): lane %d is in %s (mask 0x%08x, line %d), "
                  "lane %d in %s (mask 0x%08x, line %d)", w, blockIdx.x, blockIdx.y, blockIdx.z, first,
                  op_name[op], W.mask[first], W.line[first], j, op_name[W.op[j]], W.mask[j], W.line[j]);
      (void)who;
    }
  }
  uint64_t out[32];
  uint64_t acc = 0;
  uint32_t bits = 0;
  switch (op) {
    case OP_BALLOT: case OP_ANY: case OP_ALL:
      for (uint32_t r = m; r; r &= r - 1) bits |= (W.val[__builtin_ctz(r)] != 0) << __builtin_ctz(r);
      acc = op == OP_BALLOT ? bits : op == OP_ANY ? bits != 0 : bits == m;
      break;
    case OP_REDUCE_ADD: case OP_REDUCE_AND: case OP_REDUCE_OR: case OP_REDUCE_XOR:
    case OP_REDUCE_MIN: case OP_REDUCE_MAX: case OP_REDUCE_UMIN: case OP_REDUCE_UMAX: {
      uint32_t a = (uint32_t)W.val[first];
      for (uint32_t r = m & (m - 1); r; r &= r - 1) {
        uint32_t v = (uint32_t)W.val[__builtin_ctz(r)];
        switch (op) {
          case OP_REDUCE_ADD: a += v; break;
          case OP_REDUCE_AND: a &= v; break;
          case OP_REDUCE_OR: a |= v; break;
          case OP_REDUCE_XOR: a ^= v; break;
          case OP_REDUCE_MIN: a = (int32_t)v < (int32_t)a ? v : a; break;
          case OP_REDUCE_MAX: a = (int32_t)v > (int32_t)a ? v : a; break;
          case OP_REDUCE_UMIN: a = v < a ? v : a; break;
          case OP_REDUCE_UMAX: a = v > a ? v : a; break;
        }
      }
      acc = a;
      break;
    }
    case OP_MATCH_ALL: {
      bool same = true;
      for (uint32_t r = m; r; r &= r - 1) same &= W.val[__builtin_ctz(r)] == W.val[first];
      acc = same ? m : 0;
      break;
    }
    default: break;
  }
  for (uint32_t r = m; r; r &= r - 1) {
    int lane = __builtin_ctz(r);
    switch (op) {
      case OP_IDX: case OP_UP: case OP_DOWN: case OP_XOR: {
        /* PTX shfl.sync: a segment of `width` lanes; out-of-segment sources yield the own value */
        int width = W.width[lane], b = W.arg[lane];
        if (width < 1 || width > 32 || (width & (width - 1)))
          SF_EMU_FAIL("%s at line %d: width %d is not a power of two in [1, 32]", op_name[op], W.line[lane], width);
        int seg = 32 - width, minl = lane & seg, maxl = minl | (31 & ~seg), j;
        bool ok;
        if (op == OP_IDX) { j = minl | (b & 31 & ~seg); ok = true; }
        else if (op == OP_UP) { j = lane - b; ok = j >= minl; }
        else if (op == OP_DOWN) { j = lane + b; ok = j <= maxl; }
        else { j = lane ^ (b & 31); ok = j <= maxl; }
        /* a source lane outside the mask (or past the block's end) is undefined on
         * the GPU: all-ones bits, i.e. NaN or -1, so that using it shows */
        out[lane] = !ok ? W.val[lane] : (m >> j & 1) ? W.val[j] : ~(uint64_t)0;
        break;
      }
      case OP_MATCH_ANY: {
        uint32_t same = 0;
        for (uint32_t q = m; q; q &= q - 1) same |= (uint32_t)(W.val[__builtin_ctz(q)] == W.val[lane]) << __builtin_ctz(q);
        out[lane] = same;
        break;
      }
      default: out[lane] = acc;
    }
  }
  for (uint32_t r = m; r; r &= r - 1) W.val[__builtin_ctz(r)] = out[__builtin_ctz(r)];
  W.waiting &= ~m;
}

/* A warp-synchronous op: wait for every lane of `mask`, then exchange. */
__attribute__((noinline)) static uint64_t warp_op(int line, unsigned mask, int op, uint64_t v, int arg, int width) {
  int t = cur_tid, w = t >> 5, lane = t & 31;
  Warp& W = B.warp[w];
  uint32_t me = 1u << lane, m = mask & lanes_present(w);   /* lanes past the block's end do not exist */
  char who[96], l1[128];
  if (!(m & me))
    SF_EMU_FAIL("%s at line %d: %s (lane %d) is not in its own mask 0x%08x", op_name[op], line,
                thread_str(t, who, sizeof who), lane, mask);
  if (m & W.exited) {
    fmt_lanes(l1, sizeof l1, m & W.exited);
    SF_EMU_FAIL("%s at line %d in warp %d of block (%u,%u,%u): lane(s) %s of mask 0x%08x already exited", op_name[op],
                line, w, blockIdx.x, blockIdx.y, blockIdx.z, l1, mask);
  }
  W.mask[lane] = m;
  W.op[lane] = (uint8_t)op;
  W.val[lane] = v;
  W.arg[lane] = arg;
  W.width[lane] = width;
  W.line[lane] = line;
  W.waiting |= me;
  if ((W.waiting & m) == m) {
    complete_warp(W, w, m);
    for (uint32_t r = m & ~me; r; r &= r - 1) push_ready(32 * w + __builtin_ctz(r));
  } else {
    park();
  }
  return W.val[lane];
}

/* Nothing can run but the block is not done: say who waits for whom. */
static void report_deadlock() {
  char buf[4096], l1[128], l2[128];
  size_t len = snprintf(buf, sizeof buf, "deadlock in block (%u,%u,%u): %d of %d threads finished",
                        blockIdx.x, blockIdx.y, blockIdx.z, B.done, B.n);
  if (B.bar_waiting && len < sizeof buf)
    len += snprintf(buf + len, sizeof buf - len, "; %d thread(s) wait at __syncthreads() at %s:%d", B.bar_waiting,
                    B.bar_file, B.bar_line);
  for (int w = 0; w * 32 < B.n && len < sizeof buf; w++) {
    Warp& W = B.warp[w];
    if (!W.waiting) continue;
    int j = __builtin_ctz(W.waiting);
    fmt_lanes(l1, sizeof l1, W.waiting);
    fmt_lanes(l2, sizeof l2, W.mask[j] & ~W.waiting);
    len += snprintf(buf + len, sizeof buf - len, "; warp %d: lane(s) %s wait in %s (mask 0x%08x, line %d) for lane(s) %s",
                    w, l1, op_name[W.op[j]], W.mask[j], W.line[j], l2);
  }
  set_error("%s", buf);
}

static Pool* make_pool(size_t stack_bytes) {
  Pool* p = (Pool*)calloc(1, sizeof(Pool));
  if (!p) return nullptr;
  pthread_mutex_init(&p->mu, nullptr);
  p->stack_bytes = (stack_bytes + 4095) & ~(size_t)4095;
  return p;
}

static int run_grid(dim3 grid, dim3 block, size_t dyn, void (*fn)(void*), void* ctx) {
  unsigned long long n = (unsigned long long)block.x * block.y * block.z;
  if (n == 0 || n > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64) {
    set_error("invalid block (%u,%u,%u): at most 1024 threads, z <= 64", block.x, block.y, block.z);
    return -1;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    set_error("invalid grid (%u,%u,%u)", grid.x, grid.y, grid.z);
    return -1;
  }
  if (dyn > kMaxDynSmem) {
    set_error("dynamic shared memory of %zu bytes exceeds the %d bytes a block can have", dyn, (int)kMaxDynSmem);
    return -1;
  }
  gridDim = grid;
  blockDim = block;
  B.fn = fn;
  B.ctx = ctx;
  B.n = (int)n;
  nfibers = 0;                      /* contexts are rebuilt per launch: abandoned fibers cost nothing */
  B.nidle = 0;
  cur = &main_f;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        blockIdx = uint3{bx, by, bz};
        B.next = B.done = 0;
        B.next_idx = uint3{0, 0, 0};
        B.bar_waiting = B.bar_accum = 0;
        B.rhead = B.rcount = 0;
        for (int w = 0; w * 32 < B.n; w++) B.warp[w].waiting = B.warp[w].exited = 0;
        if (dyn) memset(dyn_smem, 0xFF, dyn);   /* uninitialised shared memory reads as NaN / -1 */
        while (B.done < B.n) {
          Fiber* f;
          if (B.rcount) {
            int t = B.ready[B.rhead];
            B.rhead = (B.rhead + 1) & (kMaxThreads - 1);
            B.rcount--;
            f = B.tfiber[t];
            set_thread(t);
          } else if (B.next < B.n) {
            f = B.nidle ? B.idle[--B.nidle] : new_fiber();
            if (!f) {
              set_error("cannot allocate a fiber stack");
              return -1;
            }
          } else {
            report_deadlock();
            return -1;
          }
          cur = f;
          swap_to(&main_f, f);
          if (err) return -1;
        }
      }
  return 0;
}

/* Called by the generated trampolines; 0 on success, else see sf_emu_error(). */
static int launch_impl(dim3 grid, dim3 block, size_t dyn, void (*fn)(void*), void* ctx) {
  if (!pool) {
    const char* kb = getenv("SYMFUSE_EMU_STACK_KB");
    pool = make_pool((kb && atoi(kb) > 0 ? (size_t)atoi(kb) : 128) * 1024);
    if (!pool) return -1;
  }
  pthread_mutex_lock(&pool->mu);
  err = 0;
  errmsg[0] = 0;
  int rc = run_grid(grid, block, dyn, fn, ctx);
  fflush(stdout);                  /* device printf shows up at the launch boundary */
  pthread_mutex_unlock(&pool->mu);
  return rc;
}


/* A kernel argument from the trampoline's args[i]: by memcpy, since the bytes
 * (a ctypes object) need not be aligned for the parameter type (float4). */
template <class T> static inline T arg(const void* p) {
  static_assert(std::is_trivially_copyable<T>::value, "kernel parameters must be trivially copyable");
  alignas(T) unsigned char buf[sizeof(T)];
  memcpy(buf, p, sizeof(T));
  return *reinterpret_cast<T*>(buf);
}

template <class F> static inline int launch(dim3 grid, dim3 block, size_t dyn, F& body) {
  return launch_impl(grid, block, dyn, run_threads<F>, &body);
}

template <class T> static inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp op on a type wider than 8 bytes");
  uint64_t r = 0;
  memcpy(&r, &v, sizeof v);
  return r;
}
template <class T> static inline T from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof v);
  return v;
}
template <class T> static inline T shfl(int line, unsigned m, int op, T v, int arg, int width = 32) {
  return from_bits<T>(warp_op(line, m, op, to_bits(v), arg, width));
}
/* __syncwarp() and __syncwarp(mask) without `, ##__VA_ARGS__` (not in strict C++17) */
struct syncwarp_at {
  int line;
  void operator()(unsigned m = 0xFFFFFFFFu) const { warp_op(line, m, OP_SYNC, 0, 0, 32); }
};
static inline unsigned vote(int line, int op, unsigned m, int pred) { return (unsigned)warp_op(line, m, op, pred != 0, 0, 32); }
template <class T> static inline T reduce(int line, int op, unsigned m, T v) {
  static_assert(sizeof(T) == 4 && std::is_integral<T>::value, "__reduce_*_sync: int or unsigned");
  if (std::is_signed<T>::value) op = op == OP_REDUCE_UMIN ? OP_REDUCE_MIN : op == OP_REDUCE_UMAX ? OP_REDUCE_MAX : op;
  return (T)(uint32_t)warp_op(line, m, op, (uint32_t)v, 0, 32);
}
template <class T> static inline unsigned match_all(int line, unsigned m, T v, int* pred) {
  unsigned r = (unsigned)warp_op(line, m, OP_MATCH_ALL, to_bits(v), 0, 32);
  *pred = r != 0;
  return r;
}
static inline unsigned activemask() {   /* lanes of the warp that exist and have not exited */
  int w = cur_tid >> 5;
  return lanes_present(w) & ~B.warp[w].exited;
}
__attribute__((noreturn)) static inline void trap(const char* what, const char* file, int line) {
  char who[96];
  SF_EMU_FAIL("%s at %s:%d in %s", what, file, line, thread_str(cur_tid, who, sizeof who));
}

}  // namespace sf_emu

/* ------------------------------------------------- barriers and warp ops
 * Macros so that error messages can name the source line. */
/* __COUNTER__ identifies the call site: threads meeting at different
 * __syncthreads() calls (even on one line) are a divergent barrier */
#define __syncthreads() ::sf_emu::syncthreads(__COUNTER__, __FILE__, __LINE__, 0, 0)
#define __syncthreads_count(p) ::sf_emu::syncthreads(__COUNTER__, __FILE__, __LINE__, 1, (p))
#define __syncthreads_and(p) ::sf_emu::syncthreads(__COUNTER__, __FILE__, __LINE__, 2, (p))
#define __syncthreads_or(p) ::sf_emu::syncthreads(__COUNTER__, __FILE__, __LINE__, 3, (p))
#define __syncwarp(...) ::sf_emu::syncwarp_at{__LINE__}(__VA_ARGS__)
#define __shfl_sync(m, v, ...) ::sf_emu::shfl(__LINE__, (m), ::sf_emu::OP_IDX, (v), __VA_ARGS__)
#define __shfl_up_sync(m, v, ...) ::sf_emu::shfl(__LINE__, (m), ::sf_emu::OP_UP, (v), __VA_ARGS__)
#define __shfl_down_sync(m, v, ...) ::sf_emu::shfl(__LINE__, (m), ::sf_emu::OP_DOWN, (v), __VA_ARGS__)
#define __shfl_xor_sync(m, v, ...) ::sf_emu::shfl(__LINE__, (m), ::sf_emu::OP_XOR, (v), __VA_ARGS__)
#define __ballot_sync(m, p) ::sf_emu::vote(__LINE__, ::sf_emu::OP_BALLOT, (m), (p))
#define __any_sync(m, p) ((int)::sf_emu::vote(__LINE__, ::sf_emu::OP_ANY, (m), (p)))
#define __all_sync(m, p) ((int)::sf_emu::vote(__LINE__, ::sf_emu::OP_ALL, (m), (p)))
#define __reduce_add_sync(m, v) ::sf_emu::reduce(__LINE__, ::sf_emu::OP_REDUCE_ADD, (m), (v))
#define __reduce_min_sync(m, v) ::sf_emu::reduce(__LINE__, ::sf_emu::OP_REDUCE_UMIN, (m), (v))
#define __reduce_max_sync(m, v) ::sf_emu::reduce(__LINE__, ::sf_emu::OP_REDUCE_UMAX, (m), (v))
#define __reduce_and_sync(m, v) ::sf_emu::reduce(__LINE__, ::sf_emu::OP_REDUCE_AND, (m), (v))
#define __reduce_or_sync(m, v) ::sf_emu::reduce(__LINE__, ::sf_emu::OP_REDUCE_OR, (m), (v))
#define __reduce_xor_sync(m, v) ::sf_emu::reduce(__LINE__, ::sf_emu::OP_REDUCE_XOR, (m), (v))
#define __match_any_sync(m, v) ((unsigned)::sf_emu::warp_op(__LINE__, (m), ::sf_emu::OP_MATCH_ANY, ::sf_emu::to_bits(v), 0, 32))
#define __match_all_sync(m, v, pred) ::sf_emu::match_all(__LINE__, (m), (v), (pred))
#define __activemask() ::sf_emu::activemask()
#define __trap() ::sf_emu::trap("__trap()", __FILE__, __LINE__)
#define __brkpt() ::sf_emu::trap("__brkpt()", __FILE__, __LINE__)
/* a failed device assert ends the launch with an error, as on the GPU, instead of aborting the process */
#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
#define assert(e) ((e) ? (void)0 : ::sf_emu::trap("assertion `" #e "' failed", __FILE__, __LINE__))
#endif

/* --------------------------------------------------- C API for cuda_emu.py */
SF_EMU_EXPORT int sf_emu_abi_version(void) { return 1; }
SF_EMU_EXPORT const char* sf_emu_error(void) { return ::sf_emu::errmsg; }
SF_EMU_EXPORT void* sf_emu_pool_new(size_t stack_bytes) { return ::sf_emu::make_pool(stack_bytes); }
/* adopt another module's pool; must happen before this module's first launch */
SF_EMU_EXPORT void sf_emu_use_pool(void* p) { ::sf_emu::pool = static_cast<::sf_emu::Pool*>(p); }

#endif /* SYMFUSE_CUDA_EMU_H */
