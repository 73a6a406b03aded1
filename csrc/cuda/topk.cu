// CUDA per-query top-k selection (contract in hopkit/cuda/topk.h).
//
// Decomposition: one 256-thread block per query. The block streams the
// query's scores in chunks of 256 (one per thread, coalesced); a score enters
// a shared-memory buffer only when it beats the current k-th best (score
// descending, then smaller item index) and the item is not excluded (binary
// search in the query's sorted exclusion row, staged in shared memory when it
// fits). When the buffer could overflow, a block bitonic sort keeps the best
// k and raises the threshold. The order (score, index) is total, so the final
// list does not depend on the order in which threads appended candidates.
#include "common.cuh"
#include "hopkit/cuda/topk.h"

namespace hopkit {
namespace cuda {
namespace {

constexpr int THREADS = 256;
constexpr int CAP = 1024;   // >= TOPK_MAX_K + THREADS, power of two
constexpr int EXC = 2048;   // exclusion ids staged in shared memory
static_assert(CAP >= TOPK_MAX_K + THREADS, "buffer too small");

// Order-preserving unsigned keys; every finite score maps to a key > 0, so 0
// marks an empty slot. -0 is folded to +0 first (they compare equal).
__device__ __forceinline__ uint64_t skey(float s) {
  uint32_t u = __float_as_uint(s + 0.0f);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return u;
}
__device__ __forceinline__ uint64_t skey(double s) {
  uint64_t u = uint64_t(__double_as_longlong(s + 0.0));
  return (u >> 63) ? ~u : (u | (uint64_t(1) << 63));
}
__device__ __forceinline__ float unkey(uint64_t k, float) {
  uint32_t u = uint32_t(k);
  u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
  return __uint_as_float(u);
}
__device__ __forceinline__ double unkey(uint64_t k, double) {
  k = (k >> 63) ? (k & ~(uint64_t(1) << 63)) : ~k;
  return __longlong_as_double((long long)k);
}

__device__ __forceinline__ bool better(uint64_t ka, int64_t ia, uint64_t kb, int64_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// Is item in the sorted list? (list in shared or global memory)
__device__ __forceinline__ bool contains(const int64_t* list, int64_t n, int64_t item) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (list[mid] < item) lo = mid + 1; else hi = mid;
  }
  return lo < n && list[lo] == item;
}

// Sorts keys/ids[0, CAP) best first (block-wide bitonic network).
__device__ void bitonic_best_first(uint64_t* keys, int64_t* ids) {
  for (int k = 2; k <= CAP; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < CAP; i += THREADS) {
        const int p = i ^ j;
        if (p > i) {
          const bool want_i_better = (i & k) == 0;
          const bool i_better = better(keys[i], ids[i], keys[p], ids[p]);
          if (want_i_better != i_better) {
            const uint64_t tk = keys[i]; keys[i] = keys[p]; keys[p] = tk;
            const int64_t ti = ids[i]; ids[i] = ids[p]; ids[p] = ti;
          }
        }
      }
      __syncthreads();
    }
  }
}

template <class S>
__global__ void __launch_bounds__(THREADS) topk_select_kernel(TopkSelectCall c) {
  __shared__ uint64_t keys[CAP];
  __shared__ int64_t ids[CAP];
  __shared__ int64_t exc[EXC];
  __shared__ int count;
  __shared__ uint64_t thr_key;
  __shared__ int64_t thr_id;
  const S* Sv = static_cast<const S*>(c.S);
  S* out_s = static_cast<S*>(c.scores_out);
  const int64_t k = c.k;
  for (int64_t q = blockIdx.x; q < c.nq; q += gridDim.x) {
    const int64_t gq = c.q0 + q;
    // This query's exclusion row.
    const int64_t* ex = nullptr;
    int64_t n_ex = 0;
    if (c.ex_indptr) {
      const int64_t r = c.ex_rows ? c.ex_rows[gq] : gq;
      ex = c.ex_indices + c.ex_indptr[r];
      n_ex = c.ex_indptr[r + 1] - c.ex_indptr[r];
    }
    const bool staged = n_ex <= EXC;
    if (staged)
      for (int64_t t = threadIdx.x; t < n_ex; t += THREADS) exc[t] = ex[t];
    // Scores of this query: dense row or candidate segment.
    int64_t base = q * c.N, n = c.N;
    const int64_t* cand = nullptr;
    if (c.cand_indptr) {
      base = c.cand_indptr[gq];
      n = c.cand_indptr[gq + 1] - base;
      cand = c.cand_indices + base;
    }
    if (threadIdx.x == 0) {
      count = 0;
      thr_key = 0;
      thr_id = 0;
    }
    __syncthreads();
    const int64_t* exl = staged ? exc : ex;
    for (int64_t t0 = 0; t0 < n; t0 += THREADS) {
      // Every thread reads count before any thread appends again, so the
      // merge decision is block-uniform.
      const int cnt = count;
      __syncthreads();
      if (cnt + THREADS > CAP) {
        for (int i = cnt + threadIdx.x; i < CAP; i += THREADS) {
          keys[i] = 0;
          ids[i] = INT64_MAX;
        }
        __syncthreads();
        bitonic_best_first(keys, ids);
        if (threadIdx.x == 0) {
          count = int(count < k ? count : k);
          if (count == k) {
            thr_key = keys[k - 1];
            thr_id = ids[k - 1];
          }
        }
        __syncthreads();
      }
      const int64_t t = t0 + threadIdx.x;
      if (t < n) {
        const S s = Sv[base + t];
        if (s == s && s > -S(INFINITY)) {  // NaN and -inf never enter
          const uint64_t key = skey(s);
          const int64_t item = cand ? cand[t] : t;
          if ((thr_key == 0 || better(key, item, thr_key, thr_id)) &&
              !(n_ex && contains(exl, n_ex, item))) {
            const int pos = atomicAdd(&count, 1);  // < CAP: merged above when it could overflow
            keys[pos] = key;
            ids[pos] = item;
          }
        }
      }
      __syncthreads();
    }
    for (int i = count + threadIdx.x; i < CAP; i += THREADS) {
      keys[i] = 0;
      ids[i] = INT64_MAX;
    }
    __syncthreads();
    bitonic_best_first(keys, ids);
    const int found = int(count < k ? count : k);
    for (int i = threadIdx.x; i < found; i += THREADS) {
      out_s[q * k + i] = unkey(keys[i], S(0));
      c.idx_out[q * k + i] = ids[i];
    }
    __syncthreads();  // shared state is reused by the next query of this block
  }
}

}  // namespace

void topk_select(const TopkSelectCall& c, void* stream) {
  if (c.k < 1 || c.k > TOPK_MAX_K)
    throw std::invalid_argument("hopkit._cuda.topk_select: k must be in [1, 256]");
  if (c.nq < 0 || c.N < 0) throw std::invalid_argument("hopkit._cuda.topk_select: negative size");
  if (c.nq == 0) return;
  const unsigned grid = unsigned(c.nq < 65535 * 16 ? c.nq : 65535 * 16);
  cudaStream_t st = as_stream(stream);
  if (c.s_dtype == F32) topk_select_kernel<float><<<grid, THREADS, 0, st>>>(c);
  else if (c.s_dtype == F64) topk_select_kernel<double><<<grid, THREADS, 0, st>>>(c);
  else throw std::invalid_argument("hopkit._cuda.topk_select: scores must be float32/float64");
  check_launch("topk_select");
}

}  // namespace cuda
}  // namespace hopkit
