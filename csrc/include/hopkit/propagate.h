// Fused multi-hop propagation (LightGCN-style layer combination):
//
//   out = sum_{l=0..L} alpha[l] * A^l X
//
// evaluated by Horner's rule, Z_L = X, Z_k = alpha[k] X + A Z_{k+1} (the
// first hop scales A X by alpha[L]), out = Z_0: L row-parallel passes of the
// g-SpMM row kernel whose epilogue writes y = a * X[i] + b * (A Z)[i] straight
// into the next buffer. Working memory is `out` plus one buffer `work` of the
// same shape, ping-ponged so that the last hop lands in `out` (work may be
// null when L <= 1); no per-layer activations are kept. The backward pass is
// the same call on the transpose: dX = sum_l alpha[l] (A^T)^l dY.
//
// A is [n_rows, n_cols]; it must be square when L >= 2 or alpha[0] != 0 (the
// caller checks). X, out, work are C-contiguous [n_rows, F]; E is null (weight
// 1) or one weight per edge, read at eperm[e] when eperm is given (to run on a
// cached transpose without gathering the weights). alpha has L + 1 entries.
#pragma once
#include <cstdint>

#include "hopkit/isa.h"
#include "hopkit/spmm.h"

namespace hopkit {

template <class T, class I>
struct PropagateArgs {
  CsrView<I> A;
  const T* X;             // [n_cols, F]
  int64_t F;
  const T* E;             // [nnz] or nullptr
  const int64_t* eperm;   // nullptr or [nnz]
  const double* alpha;    // [layers + 1]
  int64_t layers;
};

#define HOPKIT_PROPAGATE_DECLS                                                       \
  template <class T, class I>                                                        \
  void propagate(const PropagateArgs<T, I>& p, T* out, T* work);

HOPKIT_DECLARE_ISAS(HOPKIT_PROPAGATE_DECLS)

template <class T, class I>
void propagate(const PropagateArgs<T, I>& p, T* out, T* work) {
  HOPKIT_DISPATCH(propagate<T, I>(p, out, work));
}

}  // namespace hopkit
