// CUDA fused multi-hop propagation, same contract as hopkit/propagate.h:
//   out = sum_{l=0..L} alpha[l] * A^l X   (Horner: Z_k = alpha[k] X + A Z_{k+1})
// One launch sequence on `stream`, no host synchronisation between hops: each
// hop is the spmm segment kernel (+ combine for split rows) with the epilogue
// y = alpha[k] * X[i] + b * (A Z)[i], writing into `out` / `work` ping-pong
// buffers so that the last hop lands in `out`. `base` carries A, its plan,
// dtype, F, the edge weights (e_width 0 or 1, message COPY or MUL) and eperm;
// its X / X0 / ep fields are set per hop. alpha is a host array [layers + 1].
#pragma once
#include <cstdint>

#include "hopkit/cuda/spmm.h"

namespace hopkit {
namespace cuda {

void propagate(const SpmmCall& base, const void* X, const double* alpha, int64_t layers,
               void* out, void* work, void* ws_val, void* stream);

}  // namespace cuda
}  // namespace hopkit
