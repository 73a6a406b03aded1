// CUDA fused attention aggregation, same contract as hopkit/attention.h
// (scores DOT / GAT, online softmax, out + lse forward; flash-style backward
// recomputing p = exp(s - lse): pass 1 over the rows of A gives delta and dQ,
// pass 2 over the rows of the transpose AT gives dK and dV; one writer per
// output row, no atomics). float32 / float64 only. Launched on `stream`.
#pragma once
#include <cstdint>

#include "hopkit/cuda/spmm.h"

namespace hopkit {
namespace cuda {

struct AttentionCall {
  DeviceCsr A;   // rows are targets i
  DeviceCsr AT;  // its transpose (backward only)
  SpmmPlan plan;  // A's row segments (forward only; see spmm.h)
  int dtype;
  const void* Q;  // [n_rows, heads * dk]
  const void* K;  // [n_cols, heads * dk]
  const void* V;  // [n_cols, heads * dv]
  int64_t heads, dk, dv;
  int score;  // 0 DOT, 1 GAT
  double scale, slope;
};

// ws: plan.n_slots * heads * (dv + 2) values (split rows' partials), or null
// when the plan has no slots.
void attention_forward(const AttentionCall& a, void* out, void* lse, void* ws, void* stream);

// delta: scratch [n_rows, heads]; dQ, dK, dV have the shapes of Q, K, V.
void attention_backward(const AttentionCall& a, const void* out, const void* dout,
                        const void* lse, void* delta, void* dQ, void* dK, void* dV, void* stream);

}  // namespace cuda
}  // namespace hopkit
