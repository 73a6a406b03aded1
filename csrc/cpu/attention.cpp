// Fused attention aggregation (compiled once per ISA, see isa.h).
//
// Forward: parallel over target rows (parallel_rows, cut by nonzeros); per
// row all heads are processed edge by edge, so K[j] and V[j] are read once per
// edge, with an online softmax (running max m, running sum l, accumulator
// rescaled by exp(m_old - m_new) when the max grows). Backward: pass 1 over
// the rows of A (dQ, delta), pass 2 over the rows of the transpose (dK, dV),
// both recomputing p = exp(s - lse); each output row has a single writer.
#include <cmath>
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
inline T dot(const T* u, const T* v, int64_t n) {
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

template <int SC, class T, class I>
void forward_impl(const AttentionArgs<T, I>& a, T* out, T* lse) {
  const int64_t H = a.heads, dk = a.dk, dv = a.dv, Dk = H * dk, Dv = H * dv;
  const int64_t work = a.A.indptr[a.A.n_rows] * (Dk + Dv) + a.A.n_rows * Dv;
  const T ninf = -std::numeric_limits<T>::infinity();
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    std::vector<T> m(H), l(H);
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t b = a.A.indptr[i], end = a.A.indptr[i + 1];
      T* acc = out + i * Dv;  // accumulate in place: the row is ours
      for (int64_t f = 0; f < Dv; ++f) acc[f] = T(0);
      for (int64_t h = 0; h < H; ++h) m[h] = ninf, l[h] = T(0);
      const T* q = a.Q + i * Dk;
      for (int64_t e = b; e < end; ++e) {
        const int64_t j = a.A.indices[e];
        if (e + 4 < end) {
          const int64_t jn = a.A.indices[e + 4];
          rows::prefetch_row(a.K + jn * Dk, Dk);
          rows::prefetch_row(a.V + jn * Dv, Dv);
        }
        const T* k = a.K + j * Dk;
        const T* v = a.V + j * Dv;
        for (int64_t h = 0; h < H; ++h) {
          T g;
          const T s = score<SC>(a, q + h * dk, k + h * dk, g);
          T* ah = acc + h * dv;
          if (s > m[h]) {  // new running max: rescale what was summed so far
            const T c = std::exp(m[h] - s);  // 0 for the first edge
            l[h] *= c;
            for (int64_t f = 0; f < dv; ++f) ah[f] *= c;
            m[h] = s;
          }
          const T p = std::exp(s - m[h]);
          l[h] += p;
          axpy(ah, p, v + h * dv, dv);
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
  // Pass 1, per target row i: delta = <dout_i, out_i>, dQ_i = sum_j ds_ij dscore/dq.
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t b = a.A.indptr[i], end = a.A.indptr[i + 1];
      const T* q = a.Q + i * Dk;
      const T* go = dout + i * Dv;
      for (int64_t h = 0; h < H; ++h)
        delta[i * H + h] = dot(go + h * dv, out + i * Dv + h * dv, dv);
      T* dq = dQ + i * Dk;
      for (int64_t f = 0; f < Dk; ++f) dq[f] = T(0);
      for (int64_t e = b; e < end; ++e) {
        const int64_t j = a.A.indices[e];
        if (e + 4 < end) {
          const int64_t jn = a.A.indices[e + 4];
          rows::prefetch_row(a.K + jn * Dk, Dk);
          rows::prefetch_row(a.V + jn * Dv, Dv);
        }
        const T* k = a.K + j * Dk;
        const T* v = a.V + j * Dv;
        for (int64_t h = 0; h < H; ++h) {
          T g = T(1);
          const T s = score<SC>(a, q + h * dk, k + h * dk, g);
          const T p = std::exp(s - lse[i * H + h]);
          const T ds = p * (dot(go + h * dv, v + h * dv, dv) - delta[i * H + h]);
          if constexpr (SC == DOT) axpy(dq + h * dk, ds * a.scale, k + h * dk, dk);
          else dq[h] += ds * g;
        }
      }
    }
  });
  // Pass 2, per source row j over the transpose: dV_j = sum_i p_ij dout_i,
  // dK_j = sum_i ds_ij dscore/dk.
  parallel_rows(AT.indptr, AT.n_rows, work, [&](int64_t r0, int64_t r1) {
    for (int64_t j = r0; j < r1; ++j) {
      const int64_t b = AT.indptr[j], end = AT.indptr[j + 1];
      const T* k = a.K + j * Dk;
      const T* v = a.V + j * Dv;
      T* dkj = dK + j * Dk;
      T* dvj = dV + j * Dv;
      for (int64_t f = 0; f < Dk; ++f) dkj[f] = T(0);
      for (int64_t f = 0; f < Dv; ++f) dvj[f] = T(0);
      for (int64_t t = b; t < end; ++t) {
        const int64_t i = AT.indices[t];
        if (t + 4 < end) {
          const int64_t in = AT.indices[t + 4];
          rows::prefetch_row(a.Q + in * Dk, Dk);
          rows::prefetch_row(dout + in * Dv, Dv);
        }
        const T* q = a.Q + i * Dk;
        const T* go = dout + i * Dv;
        for (int64_t h = 0; h < H; ++h) {
          T g = T(1);
          const T s = score<SC>(a, q + h * dk, k + h * dk, g);
          const T p = std::exp(s - lse[i * H + h]);
          const T ds = p * (dot(go + h * dv, v + h * dv, dv) - delta[i * H + h]);
          axpy(dvj + h * dv, p, go + h * dv, dv);
          if constexpr (SC == DOT) axpy(dkj + h * dk, ds * a.scale, q + h * dk, dk);
          else dkj[h] += ds * g;
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
HOPKIT_INSTANTIATE(float, int32_t)
HOPKIT_INSTANTIATE(float, int64_t)
HOPKIT_INSTANTIATE(double, int32_t)
HOPKIT_INSTANTIATE(double, int64_t)
#undef HOPKIT_INSTANTIATE

}  // namespace HOPKIT_ISA
}  // namespace hopkit
