/* symfuse CUDA prelude: included first by every generated CUDA unit (and by
 * runtime.cuh). Fixed-width integer types, INFINITY/NAN, and the type-generic
 * math names that the op table's C expressions use (symfuse/ir/ops/elementwise.py):
 * on the GPU sf_exp/sf_log/sf_tanh/sf_abs are CUDA's own float functions. Under
 * device="cuda-emu" the emulator header (emu.h) has already included the C
 * headers, and these definitions map onto them. */
#ifndef SYMFUSE_CUDA_PRELUDE
#define SYMFUSE_CUDA_PRELUDE

#ifndef SYMFUSE_CUDA_EMU
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#define INT8_MIN (-128)
#define INT8_MAX 127
#define INT16_MIN (-32768)
#define INT16_MAX 32767
#define INT32_MIN (-2147483647 - 1)
#define INT32_MAX 2147483647
#define INT64_MIN (-9223372036854775807LL - 1)
#define INT64_MAX 9223372036854775807LL
#define UINT8_MAX 255
#define UINT16_MAX 65535
#define UINT32_MAX 4294967295U
#define UINT64_MAX 18446744073709551615ULL
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
#endif

#define SF_DEV static __device__ __forceinline__

SF_DEV float sf_exp(float x) { return expf(x); }
SF_DEV double sf_exp(double x) { return exp(x); }
SF_DEV float sf_log(float x) { return logf(x); }
SF_DEV double sf_log(double x) { return log(x); }
SF_DEV float sf_tanh(float x) { return tanhf(x); }
SF_DEV double sf_tanh(double x) { return tanh(x); }
/* |x|: an integer's without a detour through double, which rounds 64-bit ones */
SF_DEV float sf_abs(float x) { return fabsf(x); }
SF_DEV double sf_abs(double x) { return fabs(x); }
template <typename T> SF_DEV T sf_abs(T x) { return x < 0 ? (T)-x : x; }

#endif /* SYMFUSE_CUDA_PRELUDE */
