// Fused BPR loss over a batch of (user, positive item, negative item) triples,
// with no gathered [B, F] embedding tensors:
//
//   x[b] = U[users[b]] . (V[neg[b]] - V[pos[b]])         (bpr_scores)
//   loss = mean_b softplus(x[b])   (the caller sums x in float64)
//
// and, given c[b] = dloss/dx[b] (the caller computes g * sigmoid(x[b]) / B),
// the gradients wrt both tables (bpr_backward):
//
//   dU[r] = sum_{b: users[b] = r} c[b] (V[neg[b]] - V[pos[b]])
//   dV[j] = sum_{b: neg[b] = j} c[b] U[users[b]] - sum_{b: pos[b] = j} c[b] U[users[b]]
//
// U is [n_users, F], V is [n_items, F], both C-contiguous; ids are in range
// (the caller checks). `shared` means V is U (one table, item ids are rows of
// it): then dV must equal dU and every contribution lands in that one table.
// bpr_backward writes the rows of dU and dV that some triple touches and
// leaves the others as they are: pass zeroed tables (a calloc'd table then
// costs nothing for the rows a small batch never touches). It sorts the triple slots by destination row (a counting sort, in
// triple order) and gives each row to one thread, so the result is exact to
// float64 accumulation and does not depend on the thread count. Dot products
// and row sums accumulate in float64.
#pragma once
#include <cstdint>

#include "hopkit/isa.h"

namespace hopkit {

template <class T, class I>
struct BprArgs {
  const T* U;
  int64_t n_users;
  const T* V;
  int64_t n_items;
  int64_t F;
  const I* users;
  const I* pos;
  const I* neg;
  int64_t B;
  bool shared;
};

#define HOPKIT_BPR_DECLS                                             \
  template <class T, class I>                                        \
  void bpr_scores(const BprArgs<T, I>& a, T* x);                     \
  template <class T, class I>                                        \
  void bpr_backward(const BprArgs<T, I>& a, const T* c, T* dU, T* dV);

HOPKIT_DECLARE_ISAS(HOPKIT_BPR_DECLS)

template <class T, class I>
void bpr_scores(const BprArgs<T, I>& a, T* x) {
  HOPKIT_DISPATCH(bpr_scores<T, I>(a, x));
}

template <class T, class I>
void bpr_backward(const BprArgs<T, I>& a, const T* c, T* dU, T* dV) {
  HOPKIT_DISPATCH(bpr_backward<T, I>(a, c, dU, dV));
}

}  // namespace hopkit
