// Generalised CSR message passing (g-SpMM) and its backward kernels.
//
//   Y[i, f] = reduce_{e in row i} msg(X[indices[e], f], E[e(, f)])
//
// reduce: SUM, MEAN (sum / row length, 0 for an empty row), MAX, MIN (0 and
//   arg = -1 for an empty row; ties keep the first edge in CSR order; NaN
//   messages never win).
// msg:    COPY (x), MUL (x * E), ADD (x + E), EDGE (E alone, X unused);
//   E is absent (e_width = 0), one scalar per edge (e_width = 1) or one row of
//   F values per edge (e_width = F). Edge e's feature is read at eperm[e] when
//   eperm is given (used to run on a cached transpose without gathering E).
// All arrays are C-contiguous and already validated by the caller.
#pragma once
#include <cstdint>

#include "hopkit/codes.h"
#include "hopkit/isa.h"

namespace hopkit {

// Reduce / Message / Score codes: hopkit/codes.h (generated from python/hopkit/codes.py)

template <class I>
struct CsrView {
  const int64_t* indptr;  // [n_rows + 1]
  const I* indices;       // [nnz]
  int64_t n_rows;
  int64_t n_cols;
};

template <class T, class I>
struct SpmmArgs {
  CsrView<I> A;
  const T* X;              // [n_cols, F] (unused for EDGE)
  int64_t F;
  const T* E;              // [nnz] or [nnz, F] or nullptr
  int64_t e_width;         // 0, 1 or F
  const int64_t* eperm;    // nullptr or [nnz]
  int message;
  int reduce;
};

#define HOPKIT_SPMM_DECLS                                                                   \
  /* Forward: writes Y [n_rows, F] and, when arg != null (MAX/MIN), the winning edge */ \
  /* position per entry (-1 for an empty row) to arg [n_rows, F]. */                      \
  template <class T, class I>                                                               \
  void spmm_forward(const SpmmArgs<T, I>& a, T* Y, int64_t* arg);                           \
  /* Gradient wrt the edge features for every reduce: dE has E's shape. dY must already */ \
  /* be divided by the row length for MEAN. arg is required for MAX/MIN. */                 \
  template <class T, class I>                                                               \
  void spmm_edge_grad(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dE);     \
  /* Gradient wrt X for MAX/MIN: dX[indices[arg[i,f]], f] += dY[i,f] * dmsg/dx. */          \
  /* Parallel over destination rows of dX (no atomics); dX is overwritten. */               \
  template <class T, class I>                                                               \
  void spmm_arg_grad_x(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dX);

HOPKIT_DECLARE_ISAS(HOPKIT_SPMM_DECLS)

// Dispatching entry points (defined inline: pick the ISA variant).
template <class T, class I>
void spmm_forward(const SpmmArgs<T, I>& a, T* Y, int64_t* arg) {
  HOPKIT_DISPATCH(spmm_forward<T, I>(a, Y, arg));
}
template <class T, class I>
void spmm_edge_grad(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dE) {
  HOPKIT_DISPATCH(spmm_edge_grad<T, I>(a, dY, arg, dE));
}
template <class T, class I>
void spmm_arg_grad_x(const SpmmArgs<T, I>& a, const T* dY, const int64_t* arg, T* dX) {
  HOPKIT_DISPATCH(spmm_arg_grad_x<T, I>(a, dY, arg, dX));
}

}  // namespace hopkit
