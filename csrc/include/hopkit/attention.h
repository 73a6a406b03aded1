// Fused attention aggregation over a CSR graph (GAT / graph-transformer):
//
//   s_ij  = score(Q[i, h], K[j, h])    for every edge (i, j) of A and head h
//   p_ij  = softmax over row i of s_ij (empty row: output 0)
//   out[i, h] = sum_j p_ij V[j, h]
//
// score DOT: scale * <Q[i, h], K[j, h]> (Q, K: [., heads * dk]);
// score GAT: LeakyReLU(Q[i, h] + K[j, h], slope) with dk = 1: Q and K hold
//   GAT's per-node scalars a_dst . W x_i and a_src . W x_j.
// V is [n_cols, heads * dv] (dv may differ from dk). A's values are ignored.
//
// Forward: one pass per row with an online softmax (running max and sum, the
// accumulator rescaled when the max grows); writes out and the per-(row,
// head) log-sum-exp lse [n_rows, heads] (-inf for an empty row). Nothing per
// edge is stored.
// Backward (flash-attention style, probabilities recomputed from lse): pass 1
// over the rows of A computes delta[i, h] = <dout[i, h], out[i, h]> and dQ;
// pass 2 over the rows of the transpose AT (source nodes) computes dK and dV.
// Every output row is written by one thread: no atomics, no [nnz, F] tensor.
#pragma once
#include <cstdint>

#include "hopkit/isa.h"
#include "hopkit/spmm.h"

namespace hopkit {

// Reduce / Message / Score codes: hopkit/codes.h (generated from python/hopkit/codes.py)

template <class T, class I>
struct AttentionArgs {
  CsrView<I> A;      // rows are targets i, columns sources j
  const T* Q;        // [n_rows, heads * dk]
  const T* K;        // [n_cols, heads * dk]
  const T* V;        // [n_cols, heads * dv]
  int64_t heads, dk, dv;
  int score;
  T scale;           // DOT only
  T slope;           // GAT only (LeakyReLU negative slope)
};

#define HOPKIT_ATTENTION_DECLS                                                          \
  template <class T, class I>                                                           \
  void attention_forward(const AttentionArgs<T, I>& a, T* out, T* lse);                 \
  /* AT: the transpose of A (same edges, grouped by source). delta: scratch [n_rows, */ \
  /* heads]. dQ [n_rows, heads*dk], dK [n_cols, heads*dk], dV [n_cols, heads*dv]. */     \
  template <class T, class I>                                                           \
  void attention_backward(const AttentionArgs<T, I>& a, const CsrView<I>& AT,           \
                          const T* out, const T* dout, const T* lse, T* delta, T* dQ,   \
                          T* dK, T* dV);

HOPKIT_DECLARE_ISAS(HOPKIT_ATTENTION_DECLS)

template <class T, class I>
void attention_forward(const AttentionArgs<T, I>& a, T* out, T* lse) {
  HOPKIT_DISPATCH(attention_forward<T, I>(a, out, lse));
}
template <class T, class I>
void attention_backward(const AttentionArgs<T, I>& a, const CsrView<I>& AT, const T* out,
                        const T* dout, const T* lse, T* delta, T* dQ, T* dK, T* dV) {
  HOPKIT_DISPATCH(attention_backward<T, I>(a, AT, out, dout, lse, delta, dQ, dK, dV));
}

}  // namespace hopkit
