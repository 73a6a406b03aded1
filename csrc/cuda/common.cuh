// Device helpers shared by hopkit's CUDA kernels: value types and their
// accumulators, 16-byte vector loads/stores, dtype dispatch, launch checks.
// Included only by .cu files.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "hopkit/cuda/common.h"

namespace hopkit {
namespace cuda {

constexpr unsigned FULL_MASK = 0xffffffffu;

// Accumulator type: float for float/half/bfloat16, double for double.
template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <class T> __device__ __forceinline__ typename AccOf<T>::type to_acc(T v) {
  return static_cast<typename AccOf<T>::type>(v);
}
template <> __device__ __forceinline__ float to_acc<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <class T, class A> __device__ __forceinline__ T from_acc(A v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half from_acc<__half, float>(float v) {
  return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

// Loads VEC consecutive values at p (16 bytes in one instruction when
// VEC * sizeof(T) == 16; the caller guarantees 16-byte alignment then).
template <class T, int VEC, class A>
__device__ __forceinline__ void load_vec(const T* p, A (&out)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    T v[VEC];
    memcpy(v, &raw, 16);
#pragma unroll
    for (int q = 0; q < VEC; ++q) out[q] = to_acc(v[q]);
  } else {
#pragma unroll
    for (int q = 0; q < VEC; ++q) out[q] = to_acc(p[q]);
  }
}

template <class T, int VEC, class A>
__device__ __forceinline__ void store_vec(T* p, const A (&in)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    T v[VEC];
#pragma unroll
    for (int q = 0; q < VEC; ++q) v[q] = from_acc<T>(in[q]);
    uint4 raw;
    memcpy(&raw, v, 16);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
#pragma unroll
    for (int q = 0; q < VEC; ++q) p[q] = from_acc<T>(in[q]);
  }
}

// Values per 16-byte vector.
template <class T> constexpr int vec16() { return int(16 / sizeof(T)); }

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Calls fn(T{}) for a dtype code (see hopkit/cuda/common.h).
template <class Fn>
void dispatch_dtype(int dtype, Fn&& fn) {
  switch (dtype) {
    case F32: return fn(float{});
    case F64: return fn(double{});
    case F16: return fn(__half{});
    case BF16: return fn(__nv_bfloat16{});
    default: throw std::invalid_argument("hopkit._cuda: unknown dtype code " + std::to_string(dtype));
  }
}

// Throws std::runtime_error when the last launch failed (no device sync: an
// error inside a running kernel surfaces at the caller's next synchronisation).
inline void check_launch(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("hopkit CUDA ") + what + ": " + cudaGetErrorString(err));
}

// Grid for a grid-stride loop over `items` work items with `per_block` items
// per block; never 0 (callers skip the launch for empty work) and capped.
inline unsigned grid_for(int64_t items, int per_block) {
  int64_t b = (items + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > (int64_t(1) << 20)) b = int64_t(1) << 20;
  return unsigned(b);
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace cuda
}  // namespace hopkit
