// CUDA BPR kernels (contract in hopkit/cuda/bpr.h).
//
// bpr_scores: one warp per triple, lanes over the features, float64 partial
// sums folded by an xor butterfly. bpr_rows: one warp per destination row,
// lanes over features (32 at a time), slots of the row summed in their
// (stable-sorted) order in float64; no atomics.
#include "common.cuh"
#include "hopkit/cuda/bpr.h"

namespace hopkit {
namespace cuda {
namespace {

constexpr int WARPS = 8;  // warps per block

template <class T, class I>
__global__ void __launch_bounds__(WARPS * 32)
    bpr_scores_kernel(const T* __restrict__ U, const T* __restrict__ V, int64_t F,
                      const I* __restrict__ users, const I* __restrict__ pos,
                      const I* __restrict__ neg, int64_t B, T* __restrict__ x) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = int64_t(gridDim.x) * WARPS;
  for (int64_t b = int64_t(blockIdx.x) * WARPS + (threadIdx.x >> 5); b < B; b += stride) {
    const T* u = U + int64_t(users[b]) * F;
    const T* vp = V + int64_t(pos[b]) * F;
    const T* vn = V + int64_t(neg[b]) * F;
    double s = 0.0;
    for (int64_t f = lane; f < F; f += 32)
      s += double(u[f]) * (double(vn[f]) - double(vp[f]));
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(FULL_MASK, s, off);
    if (lane == 0) x[b] = T(s);
  }
}

template <class T>
__global__ void __launch_bounds__(WARPS * 32)
    bpr_rows_kernel(const T* __restrict__ Src, int64_t F, int64_t n_rows,
                    const int64_t* __restrict__ row_ptr, const int64_t* __restrict__ src,
                    const T* __restrict__ w, T* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = int64_t(gridDim.x) * WARPS;
  for (int64_t r = int64_t(blockIdx.x) * WARPS + (threadIdx.x >> 5); r < n_rows; r += stride) {
    const int64_t s0 = row_ptr[r], s1 = row_ptr[r + 1];
    for (int64_t f = lane; f < F; f += 32) {
      double acc = 0.0;
      for (int64_t s = s0; s < s1; ++s) acc += double(w[s]) * double(Src[src[s] * F + f]);
      out[r * F + f] = T(acc);
    }
  }
}

template <class Fn>
void dispatch_f(int dtype, const char* what, Fn&& fn) {
  if (dtype == F32) return fn(float{});
  if (dtype == F64) return fn(double{});
  throw std::invalid_argument(std::string("hopkit._cuda.") + what +
                              ": dtype must be float32 or float64");
}

}  // namespace

void bpr_scores(int dtype, const void* U, const void* V, int64_t F, bool ids_i64,
                const void* users, const void* pos, const void* neg, int64_t B, void* x,
                void* stream) {
  if (B < 0 || F < 0) throw std::invalid_argument("hopkit._cuda.bpr_scores: negative size");
  if (B == 0) return;
  dispatch_f(dtype, "bpr_scores", [&](auto tag) {
    using T = decltype(tag);
    const unsigned grid = grid_for(B, WARPS);
    auto launch = [&](auto itag) {
      using I = decltype(itag);
      bpr_scores_kernel<T, I><<<grid, WARPS * 32, 0, as_stream(stream)>>>(
          static_cast<const T*>(U), static_cast<const T*>(V), F, static_cast<const I*>(users),
          static_cast<const I*>(pos), static_cast<const I*>(neg), B, static_cast<T*>(x));
    };
    if (ids_i64) launch(int64_t{}); else launch(int32_t{});
  });
  check_launch("bpr_scores");
}

void bpr_rows(int dtype, const void* Src, int64_t F, int64_t n_rows, const int64_t* row_ptr,
              const int64_t* src, const void* w, void* out, void* stream) {
  if (n_rows < 0 || F < 0) throw std::invalid_argument("hopkit._cuda.bpr_rows: negative size");
  if (n_rows == 0 || F == 0) return;
  dispatch_f(dtype, "bpr_rows", [&](auto tag) {
    using T = decltype(tag);
    bpr_rows_kernel<T><<<grid_for(n_rows, WARPS), WARPS * 32, 0, as_stream(stream)>>>(
        static_cast<const T*>(Src), F, n_rows, row_ptr, src, static_cast<const T*>(w),
        static_cast<T*>(out));
  });
  check_launch("bpr_rows");
}

}  // namespace cuda
}  // namespace hopkit
