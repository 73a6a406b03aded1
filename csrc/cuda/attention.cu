// CUDA fused attention aggregation (contract in hopkit/cuda/attention.h).
//
// Forward: one warp per (row segment, head, feature tile), spmm's segments,
// 32 edges per online-softmax step, split rows combined by a second kernel
// (see attention_forward_kernel). Backward: one warp per (row, head) of A
// (pass 1) and of AT (pass 2), features in tiles of 32 lanes x TILE values,
// each edge's score recomputed by a warp dot product (xor butterfly, so every
// lane holds the same bits). Wide heads (more than one tile) recompute scores
// per tile instead of holding more accumulators. The backward walks a row
// with one warp, so a very long row is a long serial walk there.
#include <cmath>

#include "common.cuh"
#include "hopkit/cuda/attention.h"

namespace hopkit {
namespace cuda {
namespace {

constexpr int WPB = 8;    // warps per block
constexpr int TILE = 4;   // values per lane per tile
constexpr int TW = 32 * TILE;

template <class A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
  return v;
}

// <u, v> over n values, lanes strided, fixed butterfly: same in every lane.
template <class T>
__device__ __forceinline__ T warp_dot(const T* u, const T* v, int64_t n, int lane) {
  T s = T(0);
  for (int64_t d = lane; d < n; d += 32) s += u[d] * v[d];
  return warp_sum(s);
}

// Score of edge (i, j) for head h; gat_grad = d s / d (Q_i + K_j) for GAT.
template <class T>
__device__ __forceinline__ T edge_score(const AttentionCall& a, int64_t i, int64_t j, int64_t h,
                                        int lane, T& gat_grad) {
  const T* Q = static_cast<const T*>(a.Q);
  const T* K = static_cast<const T*>(a.K);
  const int64_t Dk = a.heads * a.dk;
  if (a.score == 0) {
    gat_grad = T(0);
    return T(a.scale) * warp_dot(Q + i * Dk + h * a.dk, K + j * Dk + h * a.dk, a.dk, lane);
  }
  const T z = Q[i * Dk + h] + K[j * Dk + h];
  gat_grad = z > T(0) ? T(1) : T(a.slope);
  return z > T(0) ? z : T(a.slope) * z;
}

template <class A>
__device__ __forceinline__ A warp_max(A v) {
  for (int off = 16; off > 0; off >>= 1) {
    const A o = __shfl_xor_sync(FULL_MASK, v, off);
    v = o > v ? o : v;
  }
  return v;
}

// Forward phase 1: one warp per (row segment, head, feature tile); segments
// are spmm's (at most seg_len edges, see spmm.cu), so a hub row is spread
// over many warps. A segment is walked 32 edges at a time: lane e loads edge
// e's column and score (GAT: its own scalar; DOT: warp dot products, kept by
// lane e), the chunk's max and sum update the online-softmax state once, and
// the value rows are gathered GATHER at a time (all loads issued before use).
// A row's only segment writes out and lse; a split row's segments write
// (acc, m, l) to the workspace for the combine kernel.
constexpr int GATHER = 4;

template <class T>
__global__ void __launch_bounds__(WPB * 32)
    attention_forward_kernel(AttentionCall a, T* __restrict__ out, T* __restrict__ lse,
                             T* __restrict__ ws) {
  const T* Q = static_cast<const T*>(a.Q);
  const T* K = static_cast<const T*>(a.K);
  const T* V = static_cast<const T*>(a.V);
  const int lane = threadIdx.x & 31;
  const int64_t H = a.heads, dk = a.dk, dv = a.dv, Dk = H * dk, Dv = H * dv;
  const int64_t tiles = dv > 0 ? (dv + TW - 1) / TW : 1;
  const int64_t items = a.plan.n_segs * H * tiles;
  for (int64_t w = int64_t(blockIdx.x) * WPB + (threadIdx.x >> 5); w < items;
       w += int64_t(gridDim.x) * WPB) {  // warp-uniform: every lane reaches the shuffles
    const int64_t tile = w % tiles, sh = w / tiles, sg = sh / H, h = sh - sg * H;
    const int64_t i = a.plan.seg_row[sg];
    const int64_t b = a.plan.seg_start[sg];
    const int64_t end = min(b + a.plan.seg_len, a.A.indptr[i + 1]);
    T m = -INFINITY, l = T(0), acc[TILE];
#pragma unroll
    for (int q = 0; q < TILE; ++q) acc[q] = T(0);
    for (int64_t cb = b; cb < end; cb += 32) {
      const int n = int(min(int64_t(32), end - cb));
      const int64_t j_l = lane < n ? a.A.indices[cb + lane] : 0;
      T s_l = T(0);
      if (a.score == 1) {
        const T z = Q[i * Dk + h] + K[j_l * Dk + h];
        s_l = z > T(0) ? z : T(a.slope) * z;
      } else {
        for (int e = 0; e < n; ++e) {
          const int64_t j = __shfl_sync(FULL_MASK, j_l, e);
          const T d = T(a.scale) * warp_dot(Q + i * Dk + h * dk, K + j * Dk + h * dk, dk, lane);
          if (lane == e) s_l = d;
        }
      }
      if (lane >= n) s_l = -INFINITY;
      const T m_new = max(m, warp_max(s_l));
      const T c = exp(m - m_new);  // 0 on the first chunk (m = -inf)
      const T p_l = lane < n ? exp(s_l - m_new) : T(0);
      l = l * c + warp_sum(p_l);
      m = m_new;
#pragma unroll
      for (int q = 0; q < TILE; ++q) acc[q] *= c;
      const T* vb = V + h * dv + tile * TW + lane;
      for (int e0 = 0; e0 < n; e0 += GATHER) {
        int64_t j[GATHER];
        T p[GATHER], v[GATHER][TILE];
#pragma unroll
        for (int u = 0; u < GATHER; ++u) {
          j[u] = __shfl_sync(FULL_MASK, j_l, (e0 + u) & 31);
          p[u] = __shfl_sync(FULL_MASK, p_l, (e0 + u) & 31);
        }
#pragma unroll
        for (int u = 0; u < GATHER; ++u)
#pragma unroll
          for (int q = 0; q < TILE; ++q)
            v[u][q] = (e0 + u < n && tile * TW + q * 32 + lane < dv) ? vb[j[u] * Dv + q * 32]
                                                                      : T(0);
#pragma unroll
        for (int u = 0; u < GATHER; ++u)
#pragma unroll
          for (int q = 0; q < TILE; ++q) acc[q] += p[u] * v[u][q];
      }
    }
    const int64_t slot = a.plan.seg_slot[sg];
    if (slot < 0) {
      T* o = out + i * Dv + h * dv;
#pragma unroll
      for (int q = 0; q < TILE; ++q) {
        const int64_t f = tile * TW + q * 32 + lane;
        if (f < dv) o[f] = l > T(0) ? acc[q] / l : T(0);
      }
      if (tile == 0 && lane == 0) lse[i * H + h] = l > T(0) ? m + log(l) : T(-INFINITY);
    } else {
      T* p = ws + (slot * H + h) * (dv + 2);
#pragma unroll
      for (int q = 0; q < TILE; ++q) {
        const int64_t f = tile * TW + q * 32 + lane;
        if (f < dv) p[f] = acc[q];
      }
      if (tile == 0 && lane == 0) {
        p[dv] = m;
        p[dv + 1] = l;
      }
    }
  }
}

// Forward phase 2: one warp per (split row, head) folds the row's segment
// partials in segment order: M = max m_s, L = sum l_s e^(m_s - M),
// out = sum acc_s e^(m_s - M) / L, lse = M + log L.
template <class T>
__global__ void __launch_bounds__(WPB * 32)
    attention_combine_kernel(AttentionCall a, T* __restrict__ out, T* __restrict__ lse,
                             const T* __restrict__ ws) {
  const int lane = threadIdx.x & 31;
  const int64_t H = a.heads, dv = a.dv, Dv = H * dv, stride = dv + 2;
  const int64_t items = a.plan.n_split * H;
  for (int64_t w = int64_t(blockIdx.x) * WPB + (threadIdx.x >> 5); w < items;
       w += int64_t(gridDim.x) * WPB) {
    const int64_t k = w / H, h = w - k * H, i = a.plan.split_row[k];
    const int64_t s0 = a.plan.split_ptr[k], s1 = a.plan.split_ptr[k + 1];
    T M = -INFINITY, L = T(0);
    for (int64_t s = s0; s < s1; ++s) M = max(M, ws[(s * H + h) * stride + dv]);
    for (int64_t s = s0; s < s1; ++s) {
      const T* p = ws + (s * H + h) * stride;
      L += p[dv + 1] * exp(p[dv] - M);
    }
    for (int64_t f = lane; f < dv; f += 32) {
      T acc = T(0);
      for (int64_t s = s0; s < s1; ++s) {
        const T* p = ws + (s * H + h) * stride;
        acc += p[f] * exp(p[dv] - M);
      }
      out[i * Dv + h * dv + f] = acc / L;
    }
    if (lane == 0) lse[i * H + h] = M + log(L);
  }
}

// Pass 1: warp per (row i, head h, tile): delta = <dout_i, out_i> and
// dQ_i = sum_j ds_ij dS/dQ_i with ds = p (dp - delta), dp = <dout_i, V_j>.
template <class T>
__global__ void __launch_bounds__(WPB * 32)
    attention_rows_kernel(AttentionCall a, const T* __restrict__ out, const T* __restrict__ dout,
                          const T* __restrict__ lse, T* __restrict__ delta, T* __restrict__ dQ) {
  const T* K = static_cast<const T*>(a.K);
  const T* V = static_cast<const T*>(a.V);
  const int lane = threadIdx.x & 31;
  const int64_t H = a.heads, dk = a.dk, dv = a.dv, Dk = H * dk, Dv = H * dv;
  const int64_t wq = a.score == 0 ? dk : 1;  // dQ values per (row, head)
  const int64_t tiles = wq > 0 ? (wq + TW - 1) / TW : 1;
  const int64_t items = a.A.n_rows * H * tiles;
  for (int64_t w = int64_t(blockIdx.x) * WPB + (threadIdx.x >> 5); w < items;
       w += int64_t(gridDim.x) * WPB) {
    const int64_t tile = w % tiles, ih = w / tiles, i = ih / H, h = ih - i * H;
    const int64_t b = a.A.indptr[i], end = a.A.indptr[i + 1];
    const T* go = dout + i * Dv + h * dv;
    const T dl = warp_dot(go, out + i * Dv + h * dv, dv, lane);
    if (tile == 0 && lane == 0) delta[i * H + h] = dl;
    const T L = lse[i * H + h];
    T acc[TILE];
#pragma unroll
    for (int q = 0; q < TILE; ++q) acc[q] = T(0);
    for (int64_t e = b; e < end; ++e) {
      const int64_t j = a.A.indices[e];
      T gg;
      const T s = edge_score<T>(a, i, j, h, lane, gg);
      const T p = exp(s - L);
      const T ds = p * (warp_dot(go, V + j * Dv + h * dv, dv, lane) - dl);
      if (a.score == 0) {
        const T* k = K + j * Dk + h * dk;
#pragma unroll
        for (int q = 0; q < TILE; ++q) {
          const int64_t f = tile * TW + q * 32 + lane;
          if (f < dk) acc[q] += ds * T(a.scale) * k[f];
        }
      } else {
        acc[0] += ds * gg;
      }
    }
    if (a.score == 0) {
#pragma unroll
      for (int q = 0; q < TILE; ++q) {
        const int64_t f = tile * TW + q * 32 + lane;
        if (f < dk) dQ[i * Dk + h * dk + f] = acc[q];
      }
    } else if (lane == 0) {
      dQ[i * Dk + h] = acc[0];
    }
  }
}

// Pass 2: warp per (source j, head h, tile) over the rows of AT:
// dV_j = sum_i p_ij dout_i, dK_j = sum_i ds_ij dS/dK_j.
template <class T>
__global__ void __launch_bounds__(WPB * 32)
    attention_cols_kernel(AttentionCall a, const T* __restrict__ dout, const T* __restrict__ lse,
                          const T* __restrict__ delta, T* __restrict__ dK, T* __restrict__ dV) {
  const T* Q = static_cast<const T*>(a.Q);
  const T* V = static_cast<const T*>(a.V);
  const int lane = threadIdx.x & 31;
  const int64_t H = a.heads, dk = a.dk, dv = a.dv, Dk = H * dk, Dv = H * dv;
  const int64_t wk = a.score == 0 ? dk : 1;
  const int64_t wmax = wk > dv ? wk : dv;
  const int64_t tiles = wmax > 0 ? (wmax + TW - 1) / TW : 1;
  const int64_t items = a.AT.n_rows * H * tiles;
  for (int64_t w = int64_t(blockIdx.x) * WPB + (threadIdx.x >> 5); w < items;
       w += int64_t(gridDim.x) * WPB) {
    const int64_t tile = w % tiles, jh = w / tiles, j = jh / H, h = jh - j * H;
    const int64_t b = a.AT.indptr[j], end = a.AT.indptr[j + 1];
    const T* vj = V + j * Dv + h * dv;
    T ak[TILE], av[TILE];
#pragma unroll
    for (int q = 0; q < TILE; ++q) ak[q] = av[q] = T(0);
    for (int64_t t = b; t < end; ++t) {
      const int64_t i = a.AT.indices[t];
      T gg;
      const T s = edge_score<T>(a, i, j, h, lane, gg);
      const T p = exp(s - lse[i * H + h]);
      const T* go = dout + i * Dv + h * dv;
      const T ds = p * (warp_dot(go, vj, dv, lane) - delta[i * H + h]);
#pragma unroll
      for (int q = 0; q < TILE; ++q) {
        const int64_t f = tile * TW + q * 32 + lane;
        if (f < dv) av[q] += p * go[f];
        if (a.score == 0) {
          if (f < dk) ak[q] += ds * T(a.scale) * Q[i * Dk + h * dk + f];
        } else if (q == 0) {
          ak[0] += ds * gg;
        }
      }
    }
#pragma unroll
    for (int q = 0; q < TILE; ++q) {
      const int64_t f = tile * TW + q * 32 + lane;
      if (f < dv) dV[j * Dv + h * dv + f] = av[q];
      if (a.score == 0 && f < dk) dK[j * Dk + h * dk + f] = ak[q];
    }
    if (a.score != 0 && tile == 0 && lane == 0) dK[j * Dk + h] = ak[0];
  }
}

template <class Fn>
void dispatch_float(int dtype, Fn&& fn) {
  if (dtype == F32) fn(float{});
  else if (dtype == F64) fn(double{});
  else throw std::invalid_argument("hopkit._cuda.attention: float32 or float64 only");
}

void check(const AttentionCall& a) {
  if (a.heads < 1 || a.dk < 0 || a.dv < 0 || (a.score != 0 && a.score != 1) ||
      (a.score == 1 && a.dk != 1))
    throw std::invalid_argument("hopkit._cuda.attention: bad heads / dk / dv / score");
}

}  // namespace

void attention_forward(const AttentionCall& a, void* out, void* lse, void* ws, void* stream) {
  check(a);
  if (a.A.n_rows == 0) return;
  if (a.plan.n_segs < a.A.n_rows || a.plan.seg_len < 1 || (a.plan.n_slots > 0 && !ws))
    throw std::invalid_argument("hopkit._cuda.attention_forward: bad segment plan or workspace");
  const int64_t tiles = a.dv > 0 ? (a.dv + TW - 1) / TW : 1;
  const int64_t items = a.plan.n_segs * a.heads * tiles;
  cudaStream_t st = as_stream(stream);
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    attention_forward_kernel<T><<<grid_for(items, WPB), WPB * 32, 0, st>>>(
        a, static_cast<T*>(out), static_cast<T*>(lse), static_cast<T*>(ws));
    check_launch("attention_forward");
    const int64_t split = a.plan.n_split * a.heads;
    if (split > 0) {
      attention_combine_kernel<T><<<grid_for(split, WPB), WPB * 32, 0, st>>>(
          a, static_cast<T*>(out), static_cast<T*>(lse), static_cast<const T*>(ws));
      check_launch("attention_forward (combine)");
    }
  });
}

void attention_backward(const AttentionCall& a, const void* out, const void* dout,
                        const void* lse, void* delta, void* dQ, void* dK, void* dV,
                        void* stream) {
  check(a);
  cudaStream_t st = as_stream(stream);
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t wq = a.score == 0 ? a.dk : 1;
    const int64_t rows = a.A.n_rows * a.heads * (wq > 0 ? (wq + TW - 1) / TW : 1);
    if (rows > 0)
      attention_rows_kernel<T><<<grid_for(rows, WPB), WPB * 32, 0, st>>>(
          a, static_cast<const T*>(out), static_cast<const T*>(dout),
          static_cast<const T*>(lse), static_cast<T*>(delta), static_cast<T*>(dQ));
    check_launch("attention_backward (rows)");
    const int64_t wmax = (a.score == 0 ? a.dk : 1) > a.dv ? (a.score == 0 ? a.dk : 1) : a.dv;
    const int64_t cols = a.AT.n_rows * a.heads * (wmax > 0 ? (wmax + TW - 1) / TW : 1);
    if (cols > 0)
      attention_cols_kernel<T><<<grid_for(cols, WPB), WPB * 32, 0, st>>>(
          a, static_cast<const T*>(dout), static_cast<const T*>(lse),
          static_cast<const T*>(delta), static_cast<T*>(dK), static_cast<T*>(dV));
    check_launch("attention_backward (cols)");
  });
}

}  // namespace cuda
}  // namespace hopkit
