/* symfuse kernel prelude: included by every generated C unit (and by runtime.h).
 *
 * Float32 math written without calls or branches so that gcc vectorises the
 * fused loops that use it: glibc's tanhf/expf/logf are scalar calls (tanhf costs
 * ~27 ns an element here, the rational form below ~2 ns). Generated code names
 * the type-generic sf_exp / sf_log / sf_tanh; double (and every other type)
 * goes to libm. Accuracy against double-precision references is tested in
 * tests/codegen/test_c_library.py (about 1-2 ulp).
 */
#ifndef SYMFUSE_KERNEL_H
#define SYMFUSE_KERNEL_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SF_INLINE static inline __attribute__((unused))

/* ------------------------------------------------------------------ expf
 * exp for float32 written without calls or branches so that gcc vectorises the
 * softmax loops (glibc's expf is a scalar call). Cephes polynomial on
 * r = x - n*ln2, |r| <= ln2/2, scaled by 2^n in two steps so that overflow (inf),
 * gradual underflow (subnormals, 0), +-inf and NaN come out as from expf.
 * Error about 1 ulp (measured against double exp in tests/codegen/test_c_library.py). */
SF_INLINE float sf_expf(float x) {
  float xc = x < -104.0f ? -104.0f : x;             /* NaN passes through both */
  xc = xc > 89.0f ? 89.0f : xc;
  const float magic = 12582912.0f;                  /* 1.5 * 2^23: rounds to an integer */
  const float t = xc * 1.44269504088896341f + magic;
  const float nf = t - magic;
  int32_t n;
  memcpy(&n, &t, 4);
  n -= 0x4B400000;                                  /* bits of magic: n = round(xc / ln2) */
  float r = xc - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t n1 = n >> 1, n2 = n - n1;           /* both in [-75, 65] */
  const uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, 4);
  memcpy(&s2, &b2, 4);
  const float res = (p * s1) * s2;
  return x == x ? res : x;
}

/* ------------------------------------------------------------------ logf
 * Cephes logf: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a degree-9
 * polynomial in m - 1. Subnormals are scaled by 2^23 first; 0 -> -inf,
 * negative -> NaN, inf and NaN pass through, as from logf. */
SF_INLINE float sf_logf(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  const int sub = u < 0x00800000u;                  /* +0 and positive subnormals */
  const float xs = sub ? x * 8388608.0f : x;
  memcpy(&u, &xs, 4);
  int32_t e = (int32_t)(u >> 23) - 126 - (sub ? 23 : 0);
  const uint32_t mu = (u & 0x007fffffu) | 0x3f000000u;   /* mantissa in [0.5, 1) */
  float m;
  memcpy(&m, &mu, 4);
  const int lo = m < 0.707106781186547524f;
  e -= lo;
  m = lo ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = (float)e;
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  float r = m + y + 0.693359375f * fe;
  r = x == 0.0f ? -INFINITY : r;
  r = x < 0.0f ? NAN : r;
  r = x == INFINITY ? x : r;
  return x == x ? r : x;
}

/* ------------------------------------------------------------------ tanhf
 * Eigen's rational 13/6 approximation on [-7.9053, 7.9053] (tanh is +-1 to
 * float precision beyond); NaN passes through the clamp. Max relative error
 * 1.5e-6 against double tanh (measured over [-100, 100]). */
SF_INLINE float sf_tanhf(float x) {
  const float c = 7.90531110763549805f;
  x = x > c ? c : (x < -c ? -c : x);
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = x * p;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  return p / q;
}

/* type-generic names used by the op table's C expressions (symfuse/ir/ops/elementwise.py);
 * a function-like macro name not followed by "(" is the plain libm function */
#define sf_exp(x) _Generic((x), float: sf_expf, default: exp)(x)
#define sf_log(x) _Generic((x), float: sf_logf, default: log)(x)
#define sf_tanh(x) _Generic((x), float: sf_tanhf, default: tanh)(x)
/* |x| of any type: fabs of an integer would go through double, which rounds 64-bit
 * ones (an integer's minimum stays itself, as numpy's wraps) */
#ifdef __FLT16_MAX__
#define sf_abs(x) _Generic((x), float: fabsf(x), double: fabs(x), long double: fabsl(x), \
                           _Float16: (_Float16)fabsf(x), default: ((x) < 0 ? -(x) : (x)))
#else
#define sf_abs(x) _Generic((x), float: fabsf(x), double: fabs(x), long double: fabsl(x), \
                           default: ((x) < 0 ? -(x) : (x)))
#endif

/* ------------------------------------------------------------------ _Float16 and <tgmath.h>
 * glibc declares no _Float16 libm functions (no expm1f16), so <tgmath.h> refuses a
 * float16 operand: "no matching function for type-generic call". Where a unit
 * includes <tgmath.h>, its real math names are redefined to choose as it does for
 * float, double, long double and integers (counted as double), and to take
 * _Float16 in float: the op's result is converted back to _Float16 where it is
 * assigned, as numpy computes its float16 loops in float. Without <tgmath.h> (the
 * runtime library's own build) the names stay the plain libm functions. */
#if defined(__FLT16_MAX__) && (defined(_TGMATH_H) || defined(__CLANG_TGMATH_H))
/* "fn" names the function by itself: a function-like macro name not followed by "(" */
#define SF_TG1(fn, x) _Generic((x), _Float16: fn##f, float: fn##f, long double: fn##l, default: fn)(x)
/* the operands' real type as tgmath counts it: an integer is a double */
#define SF_TG_REAL(x) _Generic((x), _Float16: (_Float16)0, float: 0.0f, long double: 0.0L, default: 0.0)
#define SF_TG2(fn, x, y) \
  _Generic(SF_TG_REAL(x) + SF_TG_REAL(y), _Float16: fn##f, float: fn##f, long double: fn##l, default: fn)((x), (y))
#undef acos
#define acos(x) SF_TG1(acos, x)
#undef asin
#define asin(x) SF_TG1(asin, x)
#undef atan
#define atan(x) SF_TG1(atan, x)
#undef acosh
#define acosh(x) SF_TG1(acosh, x)
#undef asinh
#define asinh(x) SF_TG1(asinh, x)
#undef atanh
#define atanh(x) SF_TG1(atanh, x)
#undef cos
#define cos(x) SF_TG1(cos, x)
#undef sin
#define sin(x) SF_TG1(sin, x)
#undef tan
#define tan(x) SF_TG1(tan, x)
#undef cosh
#define cosh(x) SF_TG1(cosh, x)
#undef sinh
#define sinh(x) SF_TG1(sinh, x)
#undef tanh
#define tanh(x) SF_TG1(tanh, x)
#undef exp
#define exp(x) SF_TG1(exp, x)
#undef exp2
#define exp2(x) SF_TG1(exp2, x)
#undef expm1
#define expm1(x) SF_TG1(expm1, x)
#undef log
#define log(x) SF_TG1(log, x)
#undef log10
#define log10(x) SF_TG1(log10, x)
#undef log1p
#define log1p(x) SF_TG1(log1p, x)
#undef log2
#define log2(x) SF_TG1(log2, x)
#undef logb
#define logb(x) SF_TG1(logb, x)
#undef cbrt
#define cbrt(x) SF_TG1(cbrt, x)
#undef sqrt
#define sqrt(x) SF_TG1(sqrt, x)
#undef fabs
#define fabs(x) SF_TG1(fabs, x)
#undef ceil
#define ceil(x) SF_TG1(ceil, x)
#undef floor
#define floor(x) SF_TG1(floor, x)
#undef rint
#define rint(x) SF_TG1(rint, x)
#undef nearbyint
#define nearbyint(x) SF_TG1(nearbyint, x)
#undef round
#define round(x) SF_TG1(round, x)
#undef trunc
#define trunc(x) SF_TG1(trunc, x)
#undef erf
#define erf(x) SF_TG1(erf, x)
#undef erfc
#define erfc(x) SF_TG1(erfc, x)
#undef tgamma
#define tgamma(x) SF_TG1(tgamma, x)
#undef lgamma
#define lgamma(x) SF_TG1(lgamma, x)
#undef pow
#define pow(x, y) SF_TG2(pow, x, y)
#undef atan2
#define atan2(x, y) SF_TG2(atan2, x, y)
#undef hypot
#define hypot(x, y) SF_TG2(hypot, x, y)
#undef fmod
#define fmod(x, y) SF_TG2(fmod, x, y)
#undef fmax
#define fmax(x, y) SF_TG2(fmax, x, y)
#undef fmin
#define fmin(x, y) SF_TG2(fmin, x, y)
#undef fdim
#define fdim(x, y) SF_TG2(fdim, x, y)
#undef copysign
#define copysign(x, y) SF_TG2(copysign, x, y)
#undef remainder
#define remainder(x, y) SF_TG2(remainder, x, y)
#undef nextafter
#define nextafter(x, y) SF_TG2(nextafter, x, y)
#endif

#endif /* SYMFUSE_KERNEL_H */
