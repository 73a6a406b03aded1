// CUDA negative sampling (contract in hopkit/cuda/sampling.h): one thread per
// sample, the CPU backends' draws (csrc/cpu/sampling.cpp) step for step:
// up to kNegativeTries counter-based draws, each rejected by a binary search
// in the user's sorted row, then the exact fallback (the r-th missing item).
#include "common.cuh"
#include "hopkit/cuda/sampling.h"
#include "hopkit/sampling.h"

namespace hopkit {
namespace cuda {
namespace {

constexpr int THREADS = 256;
constexpr uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL;

__device__ __forceinline__ uint64_t dmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

__device__ __forceinline__ int64_t draw(uint64_t key, int64_t t, int64_t n) {
  const uint64_t z = dmix64(key + uint64_t(t) * GOLDEN);
  return int64_t(((z >> 32) * uint64_t(n)) >> 32);
}

template <class I>
__device__ __forceinline__ bool in_row(const I* a, int64_t deg, int64_t c) {
  int64_t lo = 0, hi = deg;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(a[mid]) < c) lo = mid + 1; else hi = mid;
  }
  return lo < deg && int64_t(a[lo]) == c;
}

template <class I>
__device__ __forceinline__ int64_t rth_missing(const I* a, int64_t deg, int64_t r) {
  int64_t lo = 0, hi = deg;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(a[mid]) - mid <= r) lo = mid + 1; else hi = mid;
  }
  return r + lo;
}

template <class I, class U, class O>
__global__ void __launch_bounds__(THREADS)
    sample_kernel(const int64_t* __restrict__ indptr, const I* __restrict__ indices,
                  int64_t n_items, const U* __restrict__ users, int64_t n_neg, int64_t n,
                  uint64_t base, O* __restrict__ out) {
  const int64_t stride = int64_t(gridDim.x) * THREADS;
  for (int64_t s = int64_t(blockIdx.x) * THREADS + threadIdx.x; s < n; s += stride) {
    const int64_t u = int64_t(users[s / n_neg]);
    const I* row = indices + indptr[u];
    const int64_t deg = indptr[u + 1] - indptr[u];
    const uint64_t key = dmix64(base ^ uint64_t(s));
    int64_t item = -1;
    if (deg < n_items) {
      for (int t = 0; t < kNegativeTries; ++t) {
        const int64_t c = draw(key, t, n_items);
        if (!in_row(row, deg, c)) { item = c; break; }
      }
      if (item < 0) item = rth_missing(row, deg, draw(key, kNegativeTries, n_items - deg));
    }
    out[s] = O(item);
  }
}

}  // namespace

void sample_negatives(const int64_t* indptr, const void* indices, bool indices_i64,
                      int64_t n_items, const void* users, bool users_i64, int64_t n_batch,
                      int64_t n_neg, uint64_t seed, void* out, bool out_i64, void* stream) {
  if (n_batch < 0 || n_neg < 0 || n_items < 0)
    throw std::invalid_argument("hopkit._cuda.sample_negatives: negative size");
  const int64_t n = n_batch * n_neg;
  if (n == 0) return;
  const uint64_t base = mix64(seed);  // host: the same finalizer as the device's
  const unsigned grid = grid_for(n, THREADS);
  auto with_out = [&](auto itag, auto utag) {
    using I = decltype(itag);
    using Us = decltype(utag);
    if (out_i64)
      sample_kernel<I, Us, int64_t><<<grid, THREADS, 0, as_stream(stream)>>>(
          indptr, static_cast<const I*>(indices), n_items, static_cast<const Us*>(users), n_neg,
          n, base, static_cast<int64_t*>(out));
    else
      sample_kernel<I, Us, int32_t><<<grid, THREADS, 0, as_stream(stream)>>>(
          indptr, static_cast<const I*>(indices), n_items, static_cast<const Us*>(users), n_neg,
          n, base, static_cast<int32_t*>(out));
  };
  auto with_users = [&](auto itag) {
    if (users_i64) with_out(itag, int64_t{}); else with_out(itag, int32_t{});
  };
  if (indices_i64) with_users(int64_t{}); else with_users(int32_t{});
  check_launch("sample_negatives");
}

}  // namespace cuda
}  // namespace hopkit
