// CUDA per-query top-k selection (contract in hopkit/cuda/topk.h).
//
// Decomposition: one warp per (query, chunk of CHUNK scores). A warp streams
// its chunk in steps of 32 lanes x VALS values (each lane issues VALS
// coalesced loads before it looks at any of them). A value enters the warp's
// shared-memory buffer only when it is at least the current threshold
// (score descending, then smaller item index) and its item is not excluded
// (binary search in the query's sorted exclusion row); appends are placed by
// ballot and popcount, no atomics. The first step seeds the threshold when
// k <= 32: the k-th best of the 32 per-lane maxima is a lower bound of the
// k-th best overall. When the buffer holds merge_at entries the warp sorts it
// (bitonic, __syncwarp between steps), keeps the best k and raises the
// threshold. A query with several chunks leaves each chunk's sorted best k in
// a workspace; a second kernel runs the same warp routine over those lists.
// The order (score, index) is total, so the result does not depend on the
// schedule, and no block-wide barrier is ever needed.
#include "common.cuh"
#include "hopkit/cuda/topk.h"

namespace hopkit {
namespace cuda {
namespace {

constexpr int WARPS = 4;            // warps per block
constexpr int64_t CHUNK = 8192;     // scores per warp in the first pass
constexpr int32_t NO_ID = INT32_MAX;

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

template <class K>
__device__ __forceinline__ bool better(K ka, int32_t ia, K kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

__host__ __device__ inline int pow2_at_least(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Is item in the sorted int64 list?
__device__ __forceinline__ bool contains(const int64_t* list, int64_t n, int64_t item) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (list[mid] < item) lo = mid + 1; else hi = mid;
  }
  return lo < n && list[lo] == item;
}

// Sorts keys/ids[0, n) best first (n a power of two); one warp, bitonic.
template <class K>
__device__ void warp_sort(K* keys, int32_t* ids, int n, int lane) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int j = size >> 1; j > 0; j >>= 1) {
      for (int i = lane; i < n; i += 32) {
        const int p = i ^ j;
        if (p > i && ((i & size) == 0) != better(keys[i], ids[i], keys[p], ids[p])) {
          const K tk = keys[i]; keys[i] = keys[p]; keys[p] = tk;
          const int32_t ti = ids[i]; ids[i] = ids[p]; ids[p] = ti;
        }
      }
      __syncwarp();
    }
  }
}

// Pads [count, pow2) with empty entries, sorts, and returns min(count, k);
// buf[0, result) is then the best entries, best first.
template <class K>
__device__ int warp_keep_best(K* keys, int32_t* ids, int count, int k, int lane) {
  __syncwarp();  // appends are visible
  const int m = pow2_at_least(count > 0 ? count : 1);
  for (int i = count + lane; i < m; i += 32) {
    keys[i] = 0;
    ids[i] = NO_ID;
  }
  __syncwarp();
  warp_sort(keys, ids, m, lane);
  return count < k ? count : k;
}

// The best k (or fewer) entries of a source of n values into the warp's
// buffer, sorted; returns how many. load(t) gives (key, id) of value t (key
// 0: not eligible); excluded(id) is asked only for values that pass the
// threshold. Warp-uniform control flow throughout.
template <class K, int VALS, class Load, class Excluded>
__device__ int warp_topk(K* keys, int32_t* ids, int64_t n, int k, int merge_at, Load load,
                         Excluded excluded, int lane) {
  constexpr int STEP = 32 * VALS;
  int count = 0;
  K thr_key = 0;  // (0, NO_ID): every eligible entry is at least this
  int32_t thr_id = NO_ID;
  for (int64_t r0 = 0; r0 < n; r0 += STEP) {
    K key[VALS];
    int32_t id[VALS];
#pragma unroll
    for (int v = 0; v < VALS; ++v) {  // all loads issued before any use
      const int64_t t = r0 + v * 32 + lane;
      key[v] = 0;
      id[v] = NO_ID;
      if (t < n) load(t, key[v], id[v]);
    }
    if (r0 == 0 && k <= 32 && n > STEP) {
      // Seed: k-th best of the per-lane maxima over eligible entries.
      K bk = 0;
      int32_t bi = NO_ID;
#pragma unroll
      for (int v = 0; v < VALS; ++v)
        if (key[v] != 0 && better(key[v], id[v], bk, bi) && !excluded(id[v])) {
          bk = key[v];
          bi = id[v];
        }
      keys[lane] = bk;
      ids[lane] = bi;
      __syncwarp();
      warp_sort(keys, ids, 32, lane);
      thr_key = keys[k - 1];
      thr_id = ids[k - 1];
      __syncwarp();
    }
#pragma unroll
    for (int v = 0; v < VALS; ++v) {
      bool pass = key[v] != 0 && key[v] >= thr_key && !better(thr_key, thr_id, key[v], id[v]);
      if (pass) pass = !excluded(id[v]);
      const unsigned bal = __ballot_sync(FULL_MASK, pass);
      if (pass) {
        const int pos = count + __popc(bal & ((1u << lane) - 1u));
        keys[pos] = key[v];
        ids[pos] = id[v];
      }
      count += __popc(bal);
    }
    if (count >= merge_at) {
      count = warp_keep_best(keys, ids, count, k, lane);
      if (count == k) {  // never looser than before: every entry passed it
        thr_key = keys[k - 1];
        thr_id = ids[k - 1];
      }
      __syncwarp();
    }
  }
  return warp_keep_best(keys, ids, count, k, lane);
}

// Per-warp buffer layout in dynamic shared memory: `cap` keys, then `cap` ids.
template <class K>
struct Plan {
  int merge_at, cap;
  __host__ __device__ static Plan make(int k) {
    constexpr int STEP = 32 * (sizeof(K) == 4 ? 8 : 4);
    const int merge_at = pow2_at_least(k > 32 ? 2 * k : 64);
    return {merge_at, pow2_at_least(merge_at + STEP - 1)};
  }
  __host__ __device__ size_t bytes() const { return size_t(cap) * (sizeof(K) + sizeof(int32_t)); }
};

// Pass 1: warp per (query, chunk). With one chunk per query it writes the
// result; else the chunk's best k (padded with empty entries) to ws.
template <class S>
__global__ void __launch_bounds__(WARPS * 32)
    topk_chunks_kernel(TopkSelectCall c, int64_t n_chunks, typename Keys<S>::K* ws_keys,
                       int32_t* ws_ids) {
  using KT = Keys<S>;
  using K = typename KT::K;
  extern __shared__ __align__(16) unsigned char smem[];
  const Plan<K> plan = Plan<K>::make(int(c.k));
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  K* keys = reinterpret_cast<K*>(smem + wid * plan.bytes());
  int32_t* ids = reinterpret_cast<int32_t*>(keys + plan.cap);
  const S* Sv = static_cast<const S*>(c.S);
  const int k = int(c.k);
  const int64_t items = c.nq * n_chunks;
  for (int64_t w = int64_t(blockIdx.x) * WARPS + wid; w < items;
       w += int64_t(gridDim.x) * WARPS) {  // warp-uniform
    const int64_t q = w / n_chunks, ch = w - q * n_chunks, gq = c.q0 + q;
    const int64_t* ex = nullptr;
    int64_t n_ex = 0;
    if (c.ex_indptr) {
      const int64_t r = c.ex_rows ? c.ex_rows[gq] : gq;
      ex = c.ex_indices + c.ex_indptr[r];
      n_ex = c.ex_indptr[r + 1] - c.ex_indptr[r];
    }
    int64_t base, n, first = 0;
    const int64_t* cand = nullptr;
    if (c.cand_indptr) {  // one chunk per query
      base = c.cand_indptr[gq];
      n = c.cand_indptr[gq + 1] - base;
      cand = c.cand_indices + base;
    } else {
      first = ch * CHUNK;
      base = q * c.N + first;
      n = min(CHUNK, c.N - first);
    }
    auto load = [&](int64_t t, K& key, int32_t& id) {
      key = KT::key(Sv[base + t]);
      id = int32_t(cand ? cand[t] : first + t);
    };
    auto excluded = [&](int32_t id) { return n_ex > 0 && contains(ex, n_ex, id); };
    const int cnt = warp_topk<K, KT::VALS>(keys, ids, n, k, plan.merge_at, load, excluded, lane);
    if (n_chunks == 1) {
      S* out_s = static_cast<S*>(c.scores_out);
      for (int i = lane; i < cnt; i += 32) {
        out_s[q * k + i] = KT::score(keys[i]);
        c.idx_out[q * k + i] = ids[i];
      }
    } else {
      const int64_t o = w * k;
      for (int i = lane; i < k; i += 32) {
        ws_keys[o + i] = i < cnt ? keys[i] : K(0);
        ws_ids[o + i] = i < cnt ? ids[i] : NO_ID;
      }
    }
    __syncwarp();  // the buffer is reused by the warp's next item
  }
}

// Pass 2: warp per query over its chunks' lists (n_chunks * k entries).
template <class S>
__global__ void __launch_bounds__(WARPS * 32)
    topk_merge_kernel(TopkSelectCall c, int64_t n_chunks, const typename Keys<S>::K* ws_keys,
                      const int32_t* ws_ids) {
  using KT = Keys<S>;
  using K = typename KT::K;
  extern __shared__ __align__(16) unsigned char smem[];
  const Plan<K> plan = Plan<K>::make(int(c.k));
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  K* keys = reinterpret_cast<K*>(smem + wid * plan.bytes());
  int32_t* ids = reinterpret_cast<int32_t*>(keys + plan.cap);
  S* out_s = static_cast<S*>(c.scores_out);
  const int k = int(c.k);
  for (int64_t q = int64_t(blockIdx.x) * WARPS + wid; q < c.nq;
       q += int64_t(gridDim.x) * WARPS) {
    const int64_t base = q * n_chunks * k;
    auto load = [&](int64_t t, K& key, int32_t& id) {
      key = ws_keys[base + t];
      id = ws_ids[base + t];
    };
    auto none = [](int32_t) { return false; };
    const int cnt =
        warp_topk<K, KT::VALS>(keys, ids, n_chunks * k, k, plan.merge_at, load, none, lane);
    for (int i = lane; i < cnt; i += 32) {
      out_s[q * k + i] = KT::score(keys[i]);
      c.idx_out[q * k + i] = ids[i];
    }
    __syncwarp();
  }
}

int64_t n_chunks_of(const TopkSelectCall& c) {
  if (c.cand_indptr || c.N <= CHUNK) return 1;  // candidate rows: one warp per query
  return (c.N + CHUNK - 1) / CHUNK;
}

template <class S>
size_t key_bytes() { return sizeof(typename Keys<S>::K); }

}  // namespace

size_t topk_select_ws_bytes(const TopkSelectCall& c) {
  const int64_t chunks = n_chunks_of(c);
  if (chunks == 1) return 0;
  const size_t kb = c.s_dtype == F64 ? key_bytes<double>() : key_bytes<float>();
  return size_t(c.nq * chunks * c.k) * (kb + sizeof(int32_t)) + 16;
}

void topk_select(const TopkSelectCall& c, void* ws, void* stream) {
  if (c.k < 1 || c.k > TOPK_MAX_K)
    throw std::invalid_argument("hopkit._cuda.topk_select: k must be in [1, 256]");
  if (c.nq < 0 || c.N < 0) throw std::invalid_argument("hopkit._cuda.topk_select: negative size");
  if (c.N >= INT32_MAX)  // item ids are int32 on the device (INT32_MAX marks "none")
    throw std::invalid_argument("hopkit._cuda.topk_select: needs fewer than 2**31 - 1 items");
  if (c.nq == 0) return;
  const int64_t chunks = n_chunks_of(c);
  if (chunks > 1 && !ws) throw std::invalid_argument("hopkit._cuda.topk_select: workspace missing");
  cudaStream_t st = as_stream(stream);
  auto run = [&](auto tag) {
    using S = decltype(tag);
    using K = typename Keys<S>::K;
    const size_t smem = WARPS * Plan<K>::make(int(c.k)).bytes();  // <= 4 * 12 KB
    K* wk = static_cast<K*>(ws);
    int32_t* wi = ws ? reinterpret_cast<int32_t*>(wk + c.nq * chunks * c.k) : nullptr;
    topk_chunks_kernel<S><<<grid_for(c.nq * chunks, WARPS), WARPS * 32, smem, st>>>(c, chunks, wk,
                                                                                     wi);
    check_launch("topk_select");
    if (chunks > 1) {
      topk_merge_kernel<S><<<grid_for(c.nq, WARPS), WARPS * 32, smem, st>>>(c, chunks, wk, wi);
      check_launch("topk_select (merge)");
    }
  };
  if (c.s_dtype == F32) run(float{});
  else if (c.s_dtype == F64) run(double{});
  else throw std::invalid_argument("hopkit._cuda.topk_select: scores must be float32/float64");
}

}  // namespace cuda
}  // namespace hopkit
