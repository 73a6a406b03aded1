// Fused attention aggregation (compiled once per ISA, see isa.h).
//
// Forward: parallel over target rows (parallel_rows, cut by nonzeros); one
// pass over each row's edges with all heads together, so K[j] and V[j] are
// read once per edge, with an online softmax (running max m, running sum l,
// accumulator rescaled by exp(m_old - m_new) when the max grows) applied per
// block of B edges. Backward: pass 1 over the rows of A (dQ, delta), pass 2
// over the rows of the transpose (dK, dV), both recomputing p = exp(s - lse)
// block by block; each output row has a single writer (no atomics).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "hopkit/attention.h"
#include "hopkit/common.h"
#include "spmm_rows.h"

namespace hopkit {
namespace HOPKIT_ISA {
namespace {

// Dot product in a fixed lane order (same result on every ISA).
template <class T>
__attribute__((always_inline)) inline T dot(const T* u, const T* v, int64_t n) {
  constexpr int L = 64 / int(sizeof(T));
  if (n < L) {
    T s = 0;
    for (int64_t f = 0; f < n; ++f) s += u[f] * v[f];
    return s;
  }
  T lanes[L] = {};
  int64_t f = 0;
  for (; f + L <= n; f += L)
#pragma omp simd
    for (int l = 0; l < L; ++l) lanes[l] += u[f + l] * v[f + l];
  for (int w = L / 2; w >= 1; w /= 2)  // pairwise: a short dependency chain
    for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
  T s = lanes[0];
  for (; f < n; ++f) s += u[f] * v[f];
  return s;
}

// exp without a libm call (inlined, no vector-register spills around a call):
// float by Cody-Waite reduction and a degree-6 polynomial (Cephes expf, ~1
// ulp), 0 below -87.3 (so exp(-inf) = 0), NaN kept; double uses std::exp.
// The clamp sends NaN to -87 too, so the exponent bits below are always in
// [1, 254] (no UB for inf/NaN); the NaN itself is returned at the end.
inline double exp_(double x) { return std::exp(x); }
inline float exp_(float x) {
  const float xc = x > 88.0f ? 88.0f : (x > -87.0f ? x : -87.0f);
  const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = p * scale;
  return x != x ? x : (x < -87.0f ? 0.0f : (x > 88.0f ? std::numeric_limits<float>::infinity() : y));
}

template <class T>
inline void axpy(T* y, T a, const T* x, int64_t n) {
#pragma omp simd
  for (int64_t f = 0; f < n; ++f) y[f] += a * x[f];
}

// The score of edge (i, j) for head h; `grad` gets d s / d (pre-activation)
// for GAT (1 or slope), unused for DOT.
template <int SC, class T, class I>
inline T score(const AttentionArgs<T, I>& a, const T* q, const T* k, T& grad) {
  if constexpr (SC == DOT) {
    return a.scale * dot(q, k, a.dk);
  } else {
    const T z = q[0] + k[0];
    grad = z > T(0) ? T(1) : a.slope;
    return z > T(0) ? z : a.slope * z;
  }
}

// Edges are taken in blocks of B: the B scores of a block are independent (the
// dot products and the exp of all B overlap instead of forming one chain per
// edge), the softmax max / sum / rescale is done once per block (the online
// softmax of flash attention, with blocks of edges as its tiles).
constexpr int B = 16;

// Prefetches the K and V rows of edge e (if e < pf_end: across row ends,
// since short rows are common).
template <class T, class I>
inline void prefetch_kv(const AttentionArgs<T, I>& a, int64_t e, int64_t pf_end) {
  if (e >= pf_end) return;
  const int64_t j = a.A.indices[e];
  rows::prefetch_row(a.K + j * a.heads * a.dk, a.heads * a.dk);
  rows::prefetch_row(a.V + j * a.heads * a.dv, a.heads * a.dv);
}

template <int SC, class T, class I>
void forward_impl(const AttentionArgs<T, I>& a, T* out, T* lse) {
  const int64_t H = a.heads, dk = a.dk, dv = a.dv, Dk = H * dk, Dv = H * dv;
  const int64_t work = a.A.indptr[a.A.n_rows] * (Dk + Dv) + a.A.n_rows * Dv;
  const T ninf = -std::numeric_limits<T>::infinity();
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    const int64_t pf_end = a.A.indptr[r1];
    std::vector<T> m(H), l(H), sb(H * B);  // running max and sum; block scores
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t b = a.A.indptr[i], end = a.A.indptr[i + 1];
      T* acc = out + i * Dv;  // accumulate in place: the row is ours
      for (int64_t f = 0; f < Dv; ++f) acc[f] = T(0);
      for (int64_t h = 0; h < H; ++h) m[h] = ninf, l[h] = T(0);
      const T* q = a.Q + i * Dk;
      for (int64_t e0 = b; e0 < end; e0 += B) {
        const int nb = int(std::min<int64_t>(B, end - e0));
        for (int t = 0; t < nb; ++t) {
          const int64_t e = e0 + t;
          prefetch_kv(a, e + 8, pf_end);
          const T* k = a.K + int64_t(a.A.indices[e]) * Dk;
          for (int64_t h = 0; h < H; ++h) {
            T g;
            sb[h * B + t] = score<SC>(a, q + h * dk, k + h * dk, g);
          }
        }
        for (int64_t h = 0; h < H; ++h) {
          // New running max; c rescales what was summed so far (0 at the first
          // block, whose max is taken over -inf). A NaN score never becomes
          // the max and makes p, the sum and the output NaN.
          T* sp = sb.data() + h * B;
          T mn = m[h];
          for (int t = 0; t < nb; ++t) mn = sp[t] > mn ? sp[t] : mn;
          const T c = exp_(m[h] - mn);
#pragma omp simd
          for (int t = 0; t < nb; ++t) sp[t] = exp_(sp[t] - mn);
          T ps = T(0);
          for (int t = 0; t < nb; ++t) ps += sp[t];
          l[h] = l[h] * c + ps;
          m[h] = mn;
          if (c != T(1)) {
            T* ah = acc + h * dv;
            for (int64_t f = 0; f < dv; ++f) ah[f] *= c;
          }
        }
        for (int t = 0; t < nb; ++t) {
          const T* v = a.V + int64_t(a.A.indices[e0 + t]) * Dv;
          for (int64_t h = 0; h < H; ++h) axpy(acc + h * dv, sb[h * B + t], v + h * dv, dv);
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        T* ah = acc + h * dv;
        if (l[h] > T(0)) {
          const T inv = T(1) / l[h];
          for (int64_t f = 0; f < dv; ++f) ah[f] *= inv;
          lse[i * H + h] = m[h] + std::log(l[h]);
        } else {  // empty row (or NaN scores): output 0
          lse[i * H + h] = b == end ? ninf : m[h] + std::log(l[h]);
        }
      }
    }
  });
}

template <int SC, class T, class I>
void backward_impl(const AttentionArgs<T, I>& a, const CsrView<I>& AT, const T* out,
                   const T* dout, const T* lse, T* delta, T* dQ, T* dK, T* dV) {
  const int64_t H = a.heads, dk = a.dk, dv = a.dv, Dk = H * dk, Dv = H * dv;
  const int64_t nnz = a.A.indptr[a.A.n_rows];
  const int64_t work = nnz * (Dk + Dv);
  // Per block: sb = s - lse, pb = <dout_i, v_j> - delta_i (and gb = dscore/dz
  // for GAT); then p = exp(sb) and ds = p * pb for the whole block at once.
  auto probabilities = [&](T* sb, T* pb, int nb) {
    for (int64_t h = 0; h < H; ++h) {
      T* sp = sb + h * B;
      T* dp = pb + h * B;
#pragma omp simd
      for (int t = 0; t < nb; ++t) {
        const T p = exp_(sp[t]);
        sp[t] = p;
        dp[t] *= p;
      }
    }
  };
  // Edge (i, j) at block slot t, every head: sb = s_ij - lse_i, pb = <dout_i,
  // v_j> - delta_i, gb = dscore/dz (1 for DOT). Shared by both passes.
  auto terms = [&](T* sb, T* pb, T* gb) {
    return [=, &a](int64_t i, int64_t j, int t) {
      const T* q = a.Q + i * Dk;
      const T* go = dout + i * Dv;
      const T* k = a.K + j * Dk;
      const T* v = a.V + j * Dv;
      for (int64_t h = 0; h < H; ++h) {
        T g = T(1);
        sb[h * B + t] = score<SC>(a, q + h * dk, k + h * dk, g) - lse[i * H + h];
        pb[h * B + t] = dot(go + h * dv, v + h * dv, dv) - delta[i * H + h];
        gb[h * B + t] = g;
      }
    };
  };
  // Pass 1, per target row i: delta = <dout_i, out_i>, dQ_i = sum_j ds_ij dscore/dq.
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    const int64_t pf_end = a.A.indptr[r1];
    std::vector<T> sb(H * B), pb(H * B), gb(H * B);
    auto edge_terms = terms(sb.data(), pb.data(), gb.data());
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t b = a.A.indptr[i], end = a.A.indptr[i + 1];
      const T* go = dout + i * Dv;
      for (int64_t h = 0; h < H; ++h)
        delta[i * H + h] = dot(go + h * dv, out + i * Dv + h * dv, dv);
      T* dq = dQ + i * Dk;
      for (int64_t f = 0; f < Dk; ++f) dq[f] = T(0);
      for (int64_t e0 = b; e0 < end; e0 += B) {
        const int nb = int(std::min<int64_t>(B, end - e0));
        for (int t = 0; t < nb; ++t) {
          const int64_t e = e0 + t;
          prefetch_kv(a, e + 8, pf_end);
          const int64_t j = a.A.indices[e];
          edge_terms(i, j, t);
        }
        probabilities(sb.data(), pb.data(), nb);
        for (int t = 0; t < nb; ++t) {
          const T* k = a.K + int64_t(a.A.indices[e0 + t]) * Dk;
          for (int64_t h = 0; h < H; ++h) {
            const T ds = pb[h * B + t];
            if constexpr (SC == DOT) axpy(dq + h * dk, ds * a.scale, k + h * dk, dk);
            else dq[h] += ds * gb[h * B + t];
          }
        }
      }
    }
  });
  // Pass 2, per source row j over the transpose: dV_j = sum_i p_ij dout_i,
  // dK_j = sum_i ds_ij dscore/dk.
  parallel_rows(AT.indptr, AT.n_rows, work, [&](int64_t r0, int64_t r1) {
    const int64_t pf_end = AT.indptr[r1];
    std::vector<T> sb(H * B), pb(H * B), gb(H * B);
    auto edge_terms = terms(sb.data(), pb.data(), gb.data());
    for (int64_t j = r0; j < r1; ++j) {
      const int64_t b = AT.indptr[j], end = AT.indptr[j + 1];
      T* dkj = dK + j * Dk;
      T* dvj = dV + j * Dv;
      for (int64_t f = 0; f < Dk; ++f) dkj[f] = T(0);
      for (int64_t f = 0; f < Dv; ++f) dvj[f] = T(0);
      for (int64_t t0 = b; t0 < end; t0 += B) {
        const int nb = int(std::min<int64_t>(B, end - t0));
        for (int t = 0; t < nb; ++t) {
          if (t0 + t + 8 < pf_end) {
            const int64_t in = AT.indices[t0 + t + 8];
            rows::prefetch_row(a.Q + in * Dk, Dk);
            rows::prefetch_row(dout + in * Dv, Dv);
          }
          edge_terms(AT.indices[t0 + t], j, t);
        }
        probabilities(sb.data(), pb.data(), nb);
        for (int t = 0; t < nb; ++t) {
          const int64_t i = AT.indices[t0 + t];
          const T* q = a.Q + i * Dk;
          const T* go = dout + i * Dv;
          for (int64_t h = 0; h < H; ++h) {
            axpy(dvj + h * dv, sb[h * B + t], go + h * dv, dv);
            const T ds = pb[h * B + t];
            if constexpr (SC == DOT) axpy(dkj + h * dk, ds * a.scale, q + h * dk, dk);
            else dkj[h] += ds * gb[h * B + t];
          }
        }
      }
    }
  });
}

}  // namespace

template <class T, class I>
void attention_forward(const AttentionArgs<T, I>& a, T* out, T* lse) {
  if (a.score == GAT) forward_impl<GAT>(a, out, lse);
  else forward_impl<DOT>(a, out, lse);
}

template <class T, class I>
void attention_backward(const AttentionArgs<T, I>& a, const CsrView<I>& AT, const T* out,
                        const T* dout, const T* lse, T* delta, T* dQ, T* dK, T* dV) {
  if (a.score == GAT) backward_impl<GAT>(a, AT, out, dout, lse, delta, dQ, dK, dV);
  else backward_impl<DOT>(a, AT, out, dout, lse, delta, dQ, dK, dV);
}

#define HOPKIT_INSTANTIATE(T, I)                                                            \
  template void attention_forward<T, I>(const AttentionArgs<T, I>&, T*, T*);                \
  template void attention_backward<T, I>(const AttentionArgs<T, I>&, const CsrView<I>&,     \
                                         const T*, const T*, const T*, T*, T*, T*, T*);
HOPKIT_FOR_VALUE_INDEX_TYPES(HOPKIT_INSTANTIATE)
#undef HOPKIT_INSTANTIATE

}  // namespace HOPKIT_ISA
}  // namespace hopkit
