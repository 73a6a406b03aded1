// CPU g-SpMM kernels (compiled once per ISA, see isa.h).
//
// Forward: parallel over rows, rows cut by nonzeros (parallel_rows). Within a
// row the feature dimension is cut into register-sized chunks (256 bytes,
// then 128, then 64, then a tail); each chunk keeps its accumulator (and arg)
// in registers while it walks the row's edges, so X rows are read once per
// edge and Y written once. No fast-math: lane-wise accumulation in edge order
// is the same on every ISA up to FMA contraction.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "hopkit/common.h"
#include "hopkit/spmm.h"
#include "spmm_rows.h"

namespace hopkit {
namespace HOPKIT_ISA {
namespace {

using namespace rows;

template <int R, int MSG, int EK, class T, class I>
void forward_impl(const SpmmArgs<T, I>& a, T* Y, int64_t* arg) {
  const int64_t work = a.A.indptr[a.A.n_rows] * a.F + a.A.n_rows * a.F;
  const SpmmStore<T> store{Y, arg, a.F};
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    const int64_t pf_end = a.A.indptr[r1];
    for (int64_t i = r0; i < r1; ++i)
      for_chunks<T>(a.F, [&](auto CH, auto FULL, int64_t f0, int w) {
        forward_chunk<R, MSG, EK, CH.value, FULL.value>(a, i, f0, w, store, pf_end);
      });
  });
}

template <int R, int MSG, int EK, class T, class I>
void edge_grad_impl(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dE) {
  const int64_t F = a.F;
  const int64_t work = a.A.indptr[a.A.n_rows] * F;
  parallel_rows(a.A.indptr, a.A.n_rows, work, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t b = a.A.indptr[i], end = a.A.indptr[i + 1];
      const T* dy = dY + i * F;
      if constexpr (R == SUM || R == MEAN) {
        // dmsg/dE is x for MUL and 1 for ADD / EDGE.
        const T dy_sum = (MSG != MUL && EK == 1) ? reduce_row<false>(dy, dy, F) : T(0);
        for (int64_t e = b; e < end; ++e) {
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          const T* x = MSG == MUL ? a.X + int64_t(a.A.indices[e]) * F : nullptr;
          if constexpr (EK == 1) {
            dE[ee] = MSG == MUL ? reduce_row<true>(dy, x, F) : dy_sum;
          } else {
            T* de = dE + ee * F;
            for (int64_t f = 0; f < F; ++f) de[f] = MSG == MUL ? dy[f] * x[f] : dy[f];
          }
        }
      } else {
        for (int64_t e = b; e < end; ++e) {
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          if constexpr (EK == 1) dE[ee] = T(0);
          else std::memset(dE + ee * F, 0, sizeof(T) * F);
        }
        const int64_t* g = arg + i * F;
        for (int64_t f = 0; f < F; ++f) {
          const int64_t e = g[f];
          if (e < 0) continue;
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          const T c = MSG == MUL ? dy[f] * a.X[int64_t(a.A.indices[e]) * F + f] : dy[f];
          if constexpr (EK == 1) dE[ee] += c;
          else dE[ee * F + f] = c;
        }
      }
    }
  });
}

template <int R, int MSG, int EK, class T, class I>
void arg_grad_x_impl(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dX) {
  const int64_t F = a.F, n_rows = a.A.n_rows, n_cols = a.A.n_cols;
  // Each thread owns a range of destination rows of dX and scans all winners:
  // no atomics, no false sharing, a fixed summation order (increasing i).
  parallel_ranges(n_cols, n_rows * F * 2, [&](int64_t j0, int64_t j1) {
    std::memset(dX + j0 * F, 0, sizeof(T) * (j1 - j0) * F);
    for (int64_t i = 0; i < n_rows; ++i) {
      const int64_t* g = arg + i * F;
      const T* dy = dY + i * F;
      for (int64_t f = 0; f < F; ++f) {
        const int64_t e = g[f];
        if (e < 0) continue;
        const int64_t j = a.A.indices[e];
        if (j < j0 || j >= j1) continue;
        T d = dy[f];
        if constexpr (MSG == MUL) {
          const int64_t ee = a.eperm ? a.eperm[e] : e;
          d *= EK == 1 ? a.E[ee] : a.E[ee * F + f];
        }
        dX[j * F + f] += d;
      }
    }
  });
}

}  // namespace

template <class T, class I>
void spmm_forward(const SpmmArgs<T, I>& a, T* Y, int64_t* arg) {
  dispatch_kind(a.reduce, a.message, edge_kind(a), [&](auto R, auto M, auto K) {
    forward_impl<R.value, M.value, K.value>(a, Y, arg);
  });
}

template <class T, class I>
void spmm_edge_grad(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dE) {
  dispatch_kind(a.reduce, a.message, edge_kind(a), [&](auto R, auto M, auto K) {
    if constexpr (K.value != 0) edge_grad_impl<R.value, M.value, K.value>(a, dY, arg, dE);
  });
}

template <class T, class I>
void spmm_arg_grad_x(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dX) {
  dispatch_kind(a.reduce, a.message, edge_kind(a), [&](auto R, auto M, auto K) {
    if constexpr (R.value == MAX || R.value == MIN)
      arg_grad_x_impl<R.value, M.value, K.value>(a, dY, arg, dX);
  });
}

#define HOPKIT_INSTANTIATE(T, I)                                                            \
  template void spmm_forward<T, I>(const SpmmArgs<T, I>&, T*, int64_t*);                    \
  template void spmm_edge_grad<T, I>(const SpmmArgs<T, I>&, const T*, const int64_t*, T*);  \
  template void spmm_arg_grad_x<T, I>(const SpmmArgs<T, I>&, const T*, const int64_t*, T*);
HOPKIT_FOR_VALUE_INDEX_TYPES(HOPKIT_INSTANTIATE)
#undef HOPKIT_INSTANTIATE

}  // namespace HOPKIT_ISA
}  // namespace hopkit
