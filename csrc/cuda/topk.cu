// CUDA per-query top-k selection (contract in hopkit/cuda/topk.h).
//
// Decomposition: one 256-thread block per query. The block streams the
// query's scores in rounds of 256 x VALS (each thread issues VALS coalesced
// loads before it looks at any of them). A score enters a shared-memory
// buffer only when it is at least the current threshold (score descending,
// then smaller item index) and its item is not excluded (binary search in
// the query's sorted exclusion row, staged in shared memory when it fits).
// The first round seeds the threshold: the k-th best of the 256 per-thread
// maxima is a lower bound of the k-th best overall (k threads hold a value at
// least that good), so from the first round on only a few scores per round
// are appended. When the next round could overflow the buffer, a block
// bitonic sort keeps the best k and raises the threshold. The order
// (score, index) is total, so the result does not depend on the order in
// which threads appended.
#include "common.cuh"
#include "hopkit/cuda/topk.h"

namespace hopkit {
namespace cuda {
namespace {

constexpr int THREADS = 256;
constexpr int EXC = 2048;  // exclusion ids staged in shared memory (int32)

// Order-preserving unsigned keys (float -> 32 bits, double -> 64 bits); every
// score other than NaN and -inf maps to a key > 0, so 0 marks "no entry".
// -0 is folded to +0 first (they compare equal).
template <class S> struct Keys;
template <> struct Keys<float> {
  using K = uint32_t;
  static constexpr int VALS = 8;
  __device__ static K key(float s) {
    if (!(s == s) || s == -INFINITY) return 0;
    uint32_t u = __float_as_uint(s + 0.0f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  __device__ static float score(K k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
  }
};
template <> struct Keys<double> {
  using K = uint64_t;
  static constexpr int VALS = 4;
  __device__ static K key(double s) {
    if (!(s == s) || s == -INFINITY) return 0;
    uint64_t u = uint64_t(__double_as_longlong(s + 0.0));
    return (u >> 63) ? ~u : (u | (uint64_t(1) << 63));
  }
  __device__ static double score(K k) {
    k = (k >> 63) ? (k & ~(uint64_t(1) << 63)) : ~k;
    return __longlong_as_double((long long)k);
  }
};

constexpr int32_t NO_ID = INT32_MAX;

template <class K>
__device__ __forceinline__ bool better(K ka, int32_t ia, K kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// Is item in the sorted list? (shared int32 or global int64)
template <class I>
__device__ __forceinline__ bool contains(const I* list, int64_t n, int64_t item) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (int64_t(list[mid]) < item) lo = mid + 1; else hi = mid;
  }
  return lo < n && int64_t(list[lo]) == item;
}

// Sorts keys/ids[0, n) best first (n a power of two; block-wide bitonic).
template <class K>
__device__ void sort_best_first(K* keys, int32_t* ids, int n) {
  for (int k = 2; k <= n; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n; i += THREADS) {
        const int p = i ^ j;
        if (p > i && ((i & k) == 0) != better(keys[i], ids[i], keys[p], ids[p])) {
          const K tk = keys[i]; keys[i] = keys[p]; keys[p] = tk;
          const int32_t ti = ids[i]; ids[i] = ids[p]; ids[p] = ti;
        }
      }
      __syncthreads();
    }
  }
}

__device__ __forceinline__ int pow2_at_least(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

template <class S>
__global__ void __launch_bounds__(THREADS) topk_select_kernel(TopkSelectCall c) {
  using KT = Keys<S>;
  using K = typename KT::K;
  constexpr int VALS = KT::VALS;
  constexpr int ROUND = THREADS * VALS;
  constexpr int CAP = 2 * ROUND;  // >= TOPK_MAX_K + ROUND
  static_assert(CAP >= TOPK_MAX_K + ROUND && CAP >= THREADS, "buffer too small");
  __shared__ K keys[CAP];
  __shared__ int32_t ids[CAP];
  __shared__ int32_t exc[EXC];
  __shared__ int count;
  __shared__ K thr_key_s;
  __shared__ int32_t thr_id_s;
  const S* Sv = static_cast<const S*>(c.S);
  S* out_s = static_cast<S*>(c.scores_out);
  const int k = int(c.k);
  const int tid = threadIdx.x;
  for (int64_t q = blockIdx.x; q < c.nq; q += gridDim.x) {
    const int64_t gq = c.q0 + q;
    // This query's exclusion row (staged as int32 when it fits).
    const int64_t* ex = nullptr;
    int64_t n_ex = 0;
    if (c.ex_indptr) {
      const int64_t r = c.ex_rows ? c.ex_rows[gq] : gq;
      ex = c.ex_indices + c.ex_indptr[r];
      n_ex = c.ex_indptr[r + 1] - c.ex_indptr[r];
    }
    const bool staged = n_ex <= EXC;
    if (staged)
      for (int64_t t = tid; t < n_ex; t += THREADS) exc[t] = int32_t(ex[t]);
    auto excluded = [&](int64_t item) {
      return n_ex > 0 && (staged ? contains(exc, n_ex, item) : contains(ex, n_ex, item));
    };
    // Scores of this query: dense row or candidate segment.
    int64_t base = q * c.N, n = c.N;
    const int64_t* cand = nullptr;
    if (c.cand_indptr) {
      base = c.cand_indptr[gq];
      n = c.cand_indptr[gq + 1] - base;
      cand = c.cand_indices + base;
    }
    if (tid == 0) {
      count = 0;
      thr_key_s = 0;  // (0, NO_ID): every entry is at least this
      thr_id_s = NO_ID;
    }
    __syncthreads();
    K thr_key = 0;
    int32_t thr_id = NO_ID;
    for (int64_t r0 = 0; r0 < n; r0 += ROUND) {
      K key[VALS];
#pragma unroll
      for (int v = 0; v < VALS; ++v) {  // all loads issued before any use
        const int64_t t = r0 + v * THREADS + tid;
        key[v] = t < n ? KT::key(Sv[base + t]) : K(0);
      }
      auto item_of = [&](int v) {
        const int64_t t = r0 + v * THREADS + tid;
        return int32_t(cand ? cand[t] : t);
      };
      if (r0 == 0 && n > ROUND) {
        // Seed the threshold: k-th best of the per-thread maxima over the
        // first round's eligible entries.
        K bk = 0;
        int32_t bi = NO_ID;
#pragma unroll
        for (int v = 0; v < VALS; ++v) {
          if (key[v] == 0) continue;
          const int32_t it = item_of(v);
          if (better(key[v], it, bk, bi) && !excluded(it)) {
            bk = key[v];
            bi = it;
          }
        }
        keys[tid] = bk;
        ids[tid] = bi;
        __syncthreads();
        sort_best_first(keys, ids, THREADS);  // ends with a barrier
        thr_key = keys[k - 1];  // k <= TOPK_MAX_K == THREADS
        thr_id = ids[k - 1];
        __syncthreads();  // everyone has read the seed before appends overwrite it
      }
#pragma unroll
      for (int v = 0; v < VALS; ++v) {
        if (key[v] == 0 || key[v] < thr_key) continue;
        const int32_t it = item_of(v);
        if (better(thr_key, thr_id, key[v], it) || excluded(it)) continue;
        const int pos = atomicAdd(&count, 1);  // < CAP: merged below when it could overflow
        keys[pos] = key[v];
        ids[pos] = it;
      }
      __syncthreads();
      const int cnt = count;
      __syncthreads();  // every thread has read count before anyone changes it
      if (cnt + ROUND > CAP && r0 + ROUND < n) {  // the next round could overflow: keep the best k
        const int m = pow2_at_least(cnt);
        for (int i = cnt + tid; i < m; i += THREADS) {
          keys[i] = 0;
          ids[i] = NO_ID;
        }
        __syncthreads();
        sort_best_first(keys, ids, m);
        if (tid == 0) {
          count = cnt < k ? cnt : k;
          if (cnt >= k) {
            thr_key_s = keys[k - 1];
            thr_id_s = ids[k - 1];
          }
        }
        __syncthreads();
        if (cnt >= k) {  // never looser than the seed: buffer entries passed it
          thr_key = thr_key_s;
          thr_id = thr_id_s;
        }
      }
    }
    const int cnt = count;
    const int m = pow2_at_least(cnt > 0 ? cnt : 1);
    for (int i = cnt + tid; i < m; i += THREADS) {
      keys[i] = 0;
      ids[i] = NO_ID;
    }
    __syncthreads();
    sort_best_first(keys, ids, m);
    const int found = cnt < k ? cnt : k;
    for (int i = tid; i < found; i += THREADS) {
      out_s[q * k + i] = KT::score(keys[i]);
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
  if (c.N >= INT32_MAX)  // item ids are int32 on the device (INT32_MAX marks "none")
    throw std::invalid_argument("hopkit._cuda.topk_select: needs fewer than 2**31 - 1 items");
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
