// Fused multi-hop propagation (compiled once per ISA, see isa.h).
//
// Each hop is one parallel_rows pass (rows cut by nonzeros) of the g-SpMM row
// kernel (spmm_rows.h: feature chunks kept in registers while the row is
// walked) with the Horner epilogue y = a * X[i] + b * acc, so a hop reads the
// gathered rows once and writes its output row once; the hops are separated
// only by the implicit barrier at the end of each pass.
#include "hopkit/propagate.h"

#include "spmm_rows.h"

namespace hopkit {
namespace HOPKIT_ISA {
namespace {

using namespace rows;

// y = a * X[i] + b * acc (AX) or y = b * acc (a == 0: X is not read).
template <class T, bool AX>
struct AxpbyStore {
  T* Y;
  const T* X;
  T a, b;
  int64_t F;
  template <int R, int CH>
  inline void put(int64_t i, int64_t f0, int n, int64_t, int64_t, const T* acc,
                  const int32_t*) const {
    T* y = Y + i * F + f0;
    if constexpr (AX) {
      const T* x = X + i * F + f0;
#pragma omp simd
      for (int f = 0; f < n; ++f) y[f] = a * x[f] + b * acc[f];
    } else {
#pragma omp simd
      for (int f = 0; f < n; ++f) y[f] = b * acc[f];
    }
  }
};

template <int MSG, int EK, bool AX, class T, class I>
void hop(const SpmmArgs<T, I>& a, const AxpbyStore<T, AX>& store) {
  const int64_t work = a.A.indptr[a.A.n_rows] * a.F + a.A.n_rows * a.F;
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    const int64_t pf_end = a.A.indptr[r1];
    for (int64_t i = r0; i < r1; ++i)
      for_chunks<T>(a.F, [&](auto CH, auto FULL, int64_t f0, int w) {
        forward_chunk<SUM, MSG, EK, CH.value, FULL.value>(a, i, f0, w, store, pf_end);
      });
  });
}

template <bool AX, class T, class I>
void hop_kind(const SpmmArgs<T, I>& a, const AxpbyStore<T, AX>& store) {
  if (!a.E) return hop<COPY, 0>(a, store);
  if (a.F != 1) return hop<MUL, 1>(a, store);
  return hop<MUL, 2>(a, store);  // F == 1: the per-edge row is the scalar
}

}  // namespace

template <class T, class I>
void propagate(const PropagateArgs<T, I>& p, T* out, T* work) {
  const int64_t L = p.layers, F = p.F, N = p.A.n_rows;
  if (L == 0) {
    const T a0 = T(p.alpha[0]);
    parallel_ranges(N * F, N * F, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) out[i] = a0 * p.X[i];
    });
    return;
  }
  SpmmArgs<T, I> a{p.A, p.X, F, p.E, p.E ? 1 : 0, p.eperm, p.E ? MUL : COPY, SUM};
  for (int64_t h = 0; h < L; ++h) {
    const int64_t k = L - 1 - h;  // this hop computes Z_k
    T* dst = k % 2 == 0 ? out : work;
    const T ca = T(p.alpha[k]), cb = h == 0 ? T(p.alpha[L]) : T(1);
    if (ca != T(0)) hop_kind(a, AxpbyStore<T, true>{dst, p.X, ca, cb, F});
    else hop_kind(a, AxpbyStore<T, false>{dst, p.X, ca, cb, F});
    a.X = dst;
  }
}

#define HOPKIT_INSTANTIATE(T, I) \
  template void propagate<T, I>(const PropagateArgs<T, I>&, T*, T*);
HOPKIT_FOR_VALUE_INDEX_TYPES(HOPKIT_INSTANTIATE)
#undef HOPKIT_INSTANTIATE

}  // namespace HOPKIT_ISA
}  // namespace hopkit
