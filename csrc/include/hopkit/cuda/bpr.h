// CUDA fused BPR loss, same contract as hopkit/bpr.h (x[b] = U[users[b]] .
// (V[neg[b]] - V[pos[b]]), dot products accumulated in float64), on device
// pointers, launched on `stream` without synchronising. float32 / float64;
// ids int32 or int64 (`ids_i64`), in range (the caller checks).
//
// The backward is expressed as row sums over a destination-sorted slot list
// that the caller builds on the device (a stable sort of the destination
// rows, so the order of every row's terms is fixed):
//   out[r, :] = sum_{s in [row_ptr[r], row_ptr[r + 1])} w[s] * Src[src[s], :]
// e.g. dU: slots (users[b], +c[b], neg[b]) and (users[b], -c[b], pos[b]) over
// Src = V. One warp per row, lanes over features, float64 accumulation in
// slot order: deterministic, no atomics. Every row of out is written (rows
// with no slot get 0).
#pragma once
#include <cstdint>

namespace hopkit {
namespace cuda {

void bpr_scores(int dtype, const void* U, const void* V, int64_t F, bool ids_i64,
                const void* users, const void* pos, const void* neg, int64_t B, void* x,
                void* stream);

void bpr_rows(int dtype, const void* Src, int64_t F, int64_t n_rows, const int64_t* row_ptr,
              const int64_t* src, const void* w, void* out, void* stream);

}  // namespace cuda
}  // namespace hopkit
